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
  implicit none
  private
  public :: ws_slot, POOL_SIZE, claim_slot, release_slot, reserve

  integer, parameter :: POOL_SIZE = 64

  type :: ws_slot
    integer(c_int) :: busy = 0
    real(real32), allocatable :: a32(:), b32(:), in32(:), out32(:)
    real(real64), allocatable :: a64(:), b64(:), in64(:), out64(:)
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

  subroutine reserve(slot, dtype, n_hidden, n_in, n_out, convert_in, convert_out, ok)
    !! Makes the slot's buffers large enough: two ping-pong buffers of n_hidden values, and
    !! conversion buffers for a host array of the other precision.
    type(ws_slot), intent(inout) :: slot
    integer, intent(in) :: dtype
    integer(int64), intent(in) :: n_hidden, n_in, n_out
    logical, intent(in) :: convert_in, convert_out
    logical, intent(out) :: ok
    ok = .true.
    if (dtype == FKB_FLOAT64) then
      call grow64(slot%a64, n_hidden)
      call grow64(slot%b64, n_hidden)
      if (convert_in) call grow64(slot%in64, n_in)
      if (convert_out) call grow64(slot%out64, n_out)
    else
      call grow32(slot%a32, n_hidden)
      call grow32(slot%b32, n_hidden)
      if (convert_in) call grow32(slot%in32, n_in)
      if (convert_out) call grow32(slot%out32, n_out)
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
      allocate(buf(n), stat=st)
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
      allocate(buf(n), stat=st)
      if (st /= 0) ok = .false.
    end subroutine grow64
  end subroutine reserve

end module fkb_workspace
