!! Per-call workspaces, so that one network can run on many threads at once without locks.
!!
!! A network owns a fixed pool of slots. A predict call claims a free slot with an atomic
!! compare-and-swap, grows its buffers only if the batch is larger than any before (so the
!! steady state allocates nothing), and releases it. If every slot is busy the call falls
!! back to a private temporary slot, which is correct but allocates.
module fkb_workspace
  use iso_fortran_env, only: real32, real64, int64
  use iso_c_binding, only: c_int
  use fkb_tensor, only: FKB_FLOAT64
  use fkb_layer, only: view32_t, view64_t
  use fkb_refs, only: fkb_ref32, fkb_ref64
  implicit none
  private
  public :: ws_slot, POOL_SIZE, claim_slot, release_slot, reserve

  integer, parameter :: POOL_SIZE = 64

  type :: ws_slot
    integer(c_int) :: busy = 0
    real(real32), allocatable :: w32(:), in32(:), out32(:)   !! values + scratch; conversions
    real(real64), allocatable :: w64(:), in64(:), out64(:)
    type(view32_t), allocatable :: v32(:)                  !! inputs of a merge layer
    type(view64_t), allocatable :: v64(:)
    type(fkb_ref32), allocatable :: x32(:), y32(:)         !! host arrays, model precision
    type(fkb_ref64), allocatable :: x64(:), y64(:)
  end type ws_slot

  interface
    integer(c_int) function fkb_atomic_try_claim(flag) bind(c, name='fkb_atomic_try_claim')
      import :: c_int
      integer(c_int), intent(inout) :: flag
    end function fkb_atomic_try_claim
    subroutine fkb_atomic_release(flag) bind(c, name='fkb_atomic_release')
      import :: c_int
      integer(c_int), intent(inout) :: flag
    end subroutine fkb_atomic_release
  end interface

contains

  integer function claim_slot(pool)
    !! Index of a slot now owned by the caller, or 0 if all are busy.
    type(ws_slot), intent(inout) :: pool(:)
    integer :: i
    do i = 1, size(pool)
      if (fkb_atomic_try_claim(pool(i)%busy) /= 0) then
        claim_slot = i
        return
      end if
    end do
    claim_slot = 0
  end function claim_slot

  subroutine release_slot(slot)
    type(ws_slot), intent(inout) :: slot
    call fkb_atomic_release(slot%busy)
  end subroutine release_slot

  subroutine reserve(slot, dtype, n_work, n_in, n_out, n_views, n_gin, n_gout, ok)
    !! Makes the slot large enough: n_work values for the layers, n_in/n_out for host arrays
    !! of the other precision, n_views merge views, n_gin/n_gout host array references.
    type(ws_slot), intent(inout) :: slot
    integer, intent(in) :: dtype, n_views, n_gin, n_gout
    integer(int64), intent(in) :: n_work, n_in, n_out
    logical, intent(out) :: ok
    ok = .true.
    if (dtype == FKB_FLOAT64) then
      call grow64(slot%w64, n_work)
      if (n_in > 0) call grow64(slot%in64, n_in)
      if (n_out > 0) call grow64(slot%out64, n_out)
      if (.not. allocated(slot%v64)) allocate(slot%v64(n_views))
      if (size(slot%v64) < n_views) then
        deallocate(slot%v64)
        allocate(slot%v64(n_views))
      end if
      if (.not. allocated(slot%x64)) allocate(slot%x64(n_gin), slot%y64(n_gout))
    else
      call grow32(slot%w32, n_work)
      if (n_in > 0) call grow32(slot%in32, n_in)
      if (n_out > 0) call grow32(slot%out32, n_out)
      if (.not. allocated(slot%v32)) allocate(slot%v32(n_views))
      if (size(slot%v32) < n_views) then
        deallocate(slot%v32)
        allocate(slot%v32(n_views))
      end if
      if (.not. allocated(slot%x32)) allocate(slot%x32(n_gin), slot%y32(n_gout))
    end if
  contains
    subroutine grow32(buf, n)
      real(real32), allocatable, intent(inout) :: buf(:)
      integer(int64), intent(in) :: n
      integer :: st
      if (allocated(buf)) then
        if (size(buf, kind=int64) >= n) return
        deallocate(buf)
      end if
      allocate(buf(max(n, 1_int64)), stat=st)
      if (st /= 0) ok = .false.
    end subroutine grow32
    subroutine grow64(buf, n)
      real(real64), allocatable, intent(inout) :: buf(:)
      integer(int64), intent(in) :: n
      integer :: st
      if (allocated(buf)) then
        if (size(buf, kind=int64) >= n) return
        deallocate(buf)
      end if
      allocate(buf(max(n, 1_int64)), stat=st)
      if (st /= 0) ok = .false.
    end subroutine grow64
  end subroutine reserve

end module fkb_workspace
