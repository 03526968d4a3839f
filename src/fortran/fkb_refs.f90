!! References to host arrays for networks with several inputs or outputs:
!!
!!     type(fkb_ref32) :: ins(2), outs(3)
!!     ins(1) = fkb_ref(x_column)      ! x_column(60*6, batch), TARGET or POINTER
!!     ...
!!     call net%predict(ins, outs, stat, errmsg)
!!
!! A reference keeps a pointer to the array, so the array must have the TARGET (or POINTER)
!! attribute, be contiguous, and stay alive while the reference is used. A rank-2 array is
!! (values per sample, batch); a rank-1 array is one sample. A strided section gives an empty
!! reference (predict then reports it): a pointer to a packed copy would dangle.
module fkb_refs
  use iso_fortran_env, only: real32, real64, int64
  use iso_c_binding, only: c_loc, c_f_pointer
  implicit none
  private
  public :: fkb_ref32, fkb_ref64, fkb_ref

  type :: fkb_ref32
    real(real32), pointer, contiguous :: p(:) => null()
    integer(int64) :: rows = 0, cols = 0
  end type fkb_ref32

  type :: fkb_ref64
    real(real64), pointer, contiguous :: p(:) => null()
    integer(int64) :: rows = 0, cols = 0
  end type fkb_ref64

  interface fkb_ref
    module procedure ref32_2d, ref32_1d, ref64_2d, ref64_1d
  end interface fkb_ref

contains

  function ref32_2d(x) result(r)
    real(real32), intent(in), target :: x(:, :)
    type(fkb_ref32) :: r
    if (is_contiguous(x)) call c_f_pointer(c_loc(x), r%p, [size(x)])
    r%rows = size(x, 1, int64)
    r%cols = size(x, 2, int64)
  end function ref32_2d

  function ref32_1d(x) result(r)
    real(real32), intent(in), target :: x(:)
    type(fkb_ref32) :: r
    if (is_contiguous(x)) call c_f_pointer(c_loc(x), r%p, [size(x)])
    r%rows = size(x, kind=int64)
    r%cols = 1
  end function ref32_1d

  function ref64_2d(x) result(r)
    real(real64), intent(in), target :: x(:, :)
    type(fkb_ref64) :: r
    if (is_contiguous(x)) call c_f_pointer(c_loc(x), r%p, [size(x)])
    r%rows = size(x, 1, int64)
    r%cols = size(x, 2, int64)
  end function ref64_2d

  function ref64_1d(x) result(r)
    real(real64), intent(in), target :: x(:)
    type(fkb_ref64) :: r
    if (is_contiguous(x)) call c_f_pointer(c_loc(x), r%p, [size(x)])
    r%rows = size(x, kind=int64)
    r%cols = 1
  end function ref64_1d

end module fkb_refs
