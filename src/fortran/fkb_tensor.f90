!! A named parameter tensor of a layer, stored flat in C (row-major) order of its Keras shape,
!! in the network's precision. A Dense kernel (n_in, units) is therefore, read column-major,
!! the matrix w(units, n_in) that the batch-major GEMM wants.
module fkb_tensor
  use iso_fortran_env, only: real32, real64, int64
  implicit none
  private
  public :: fkb_tensor_t, FKB_FLOAT32, FKB_FLOAT64, dtype_name, dtype_bytes

  integer, parameter :: FKB_FLOAT32 = 1   !! equals the C enum fkb_dtype
  integer, parameter :: FKB_FLOAT64 = 2

  type :: fkb_tensor_t
    character(len=:), allocatable :: name
    integer(int64), allocatable :: shape(:)   !! Keras shape, outermost first
    real(real32), allocatable :: r32(:)       !! data of a float32 network
    real(real64), allocatable :: r64(:)       !! data of a float64 network
  contains
    procedure :: numel => tensor_numel
    procedure :: shape_text => tensor_shape_text
    procedure :: values => tensor_values
    procedure :: assign => tensor_assign
  end type fkb_tensor_t

contains

  pure integer(int64) function tensor_numel(self)
    class(fkb_tensor_t), intent(in) :: self
    tensor_numel = product(self%shape)
  end function tensor_numel

  pure function tensor_shape_text(self) result(text)
    !! The shape as written in a `.fkb` header: "94,256".
    class(fkb_tensor_t), intent(in) :: self
    character(len=:), allocatable :: text
    character(len=24) :: buf
    integer :: i
    text = ''
    do i = 1, size(self%shape)
      write (buf, '(i0)') self%shape(i)
      if (i > 1) text = text // ','
      text = text // trim(buf)
    end do
  end function tensor_shape_text

  pure function tensor_values(self) result(v)
    !! The data as double precision (exact for either precision).
    class(fkb_tensor_t), intent(in) :: self
    real(real64), allocatable :: v(:)
    if (allocated(self%r64)) then
      v = self%r64
    else if (allocated(self%r32)) then
      v = real(self%r32, real64)
    else
      allocate(v(0))
    end if
  end function tensor_values

  pure subroutine tensor_assign(self, v, dtype)
    !! Stores v in the given precision (rounding to float32 if dtype is FKB_FLOAT32).
    class(fkb_tensor_t), intent(inout) :: self
    real(real64), intent(in) :: v(:)
    integer, intent(in) :: dtype
    if (dtype == FKB_FLOAT64) then
      self%r64 = v
    else
      self%r32 = real(v, real32)
    end if
  end subroutine tensor_assign

  pure function dtype_name(dtype) result(name)
    integer, intent(in) :: dtype
    character(len=:), allocatable :: name
    if (dtype == FKB_FLOAT64) then
      name = 'float64'
    else
      name = 'float32'
    end if
  end function dtype_name

  pure integer function dtype_bytes(dtype)
    integer, intent(in) :: dtype
    dtype_bytes = merge(8, 4, dtype == FKB_FLOAT64)
  end function dtype_bytes

end module fkb_tensor
