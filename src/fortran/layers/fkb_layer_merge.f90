!! Keras' merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum (elementwise over
!! inputs of one shape, applied left to right as Keras does) and Concatenate (along one axis
!! of the per-sample shape).
module fkb_layer_merge
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_SHAPE, FKB_ERR_FORMAT, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t, view32_t, view64_t
  use fkb_tensor, only: fkb_tensor_t
  implicit none
  private
  public :: fkb_merge_t

  integer, parameter :: OP_ADD = 1, OP_SUB = 2, OP_MUL = 3, OP_AVG = 4, OP_MAX = 5, &
                        OP_MIN = 6, OP_CAT = 7

  type, extends(fkb_layer_t) :: fkb_merge_t
    integer :: op = OP_ADD
    integer(int64) :: axis = -1                !! as Keras has it (concatenate)
    integer(int64) :: outer = 1, inner = 1     !! concatenate: blocks before/after the axis
    integer(int64), allocatable :: lens(:)     !! concatenate: each input's length on it
  contains
    procedure :: configure => merge_configure
    procedure :: options => merge_options
    procedure :: min_inputs => merge_min_inputs
    procedure :: max_inputs => merge_max_inputs
    procedure :: forward_r32 => merge_forward_r32
    procedure :: forward_r64 => merge_forward_r64
    procedure :: forward_multi_r32 => merge_multi_r32
    procedure :: forward_multi_r64 => merge_multi_r64
    procedure :: supports_training => merge_supports_training
    procedure :: backward_multi_r32 => merge_backward_r32
    procedure :: backward_multi_r64 => merge_backward_r64
  end type fkb_merge_t

contains

  integer function merge_min_inputs(self)
    class(fkb_merge_t), intent(in) :: self
    merge_min_inputs = 2
  end function merge_min_inputs

  integer function merge_max_inputs(self)
    class(fkb_merge_t), intent(in) :: self
    merge_max_inputs = huge(1)
    if (self%type_name == 'subtract') merge_max_inputs = 2
  end function merge_max_inputs

  subroutine merge_configure(self, cfg, stat, msg)
    class(fkb_merge_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64), allocatable :: s1(:)
    integer :: k, r, a
    stat = FKB_OK
    select case (self%type_name)
    case ('add'); self%op = OP_ADD
    case ('subtract'); self%op = OP_SUB
    case ('multiply'); self%op = OP_MUL
    case ('average'); self%op = OP_AVG
    case ('maximum'); self%op = OP_MAX
    case ('minimum'); self%op = OP_MIN
    case default; self%op = OP_CAT
    end select
    s1 = self%in_shapes(1)%d
    r = size(s1)
    if (self%op /= OP_CAT) then
      do k = 2, size(self%in_shapes)
        if (.not. same(self%in_shapes(k)%d, s1)) then
          call mismatch(k)
          return
        end if
      end do
      self%n_out = product(s1)
      self%out_shape = s1
      return
    end if
    call cfg%get_int('axis', self%axis, stat, msg, default=-1_int64)
    if (stat /= FKB_OK) return
    ! Keras counts the batch axis as 0; negative axes count from the end.
    if (self%axis < 0) then
      a = int(r + 1 + self%axis)
    else
      a = int(self%axis)
    end if
    if (a < 1 .or. a > r) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': axis ' // int_text(self%axis) &
                     // ' is not an axis of the per-sample shape (rank ' // &
                     int_text(int(r, int64)) // ')')
      return
    end if
    allocate(self%lens(size(self%in_shapes)))
    do k = 1, size(self%in_shapes)
      associate (sk => self%in_shapes(k)%d)
        if (size(sk) /= r) then
          call mismatch(k)
          return
        end if
        if (any(sk(1:a - 1) /= s1(1:a - 1)) .or. any(sk(a + 1:) /= s1(a + 1:))) then
          call mismatch(k)
          return
        end if
        self%lens(k) = sk(a)
      end associate
    end do
    self%outer = product(s1(1:a - 1))
    self%inner = product(s1(a + 1:))
    self%out_shape = s1
    self%out_shape(a) = sum(self%lens)
    self%n_out = product(self%out_shape)
  contains
    pure logical function same(p, q)
      integer(int64), intent(in) :: p(:), q(:)
      same = size(p) == size(q)
      if (same) same = all(p == q)
    end function same
    subroutine mismatch(k)
      integer, intent(in) :: k
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': input ' // &
                     int_text(int(k, int64)) // ' has shape (' // shape_text(self%in_shapes(k)%d) &
                     // '), input 1 has (' // shape_text(s1) // ')' // &
                     merge(' (they may differ only along the axis)', &
                           '                                      ', self%op == OP_CAT))
      msg = trim(msg)
    end subroutine mismatch
  end subroutine merge_configure

  pure function shape_text(d) result(t)
    integer(int64), intent(in) :: d(:)
    character(len=:), allocatable :: t
    integer :: j
    t = ''
    do j = 1, size(d)
      if (j > 1) t = t // ','
      t = t // int_text(d(j))
    end do
  end function shape_text

  subroutine merge_options(self, cfg)
    class(fkb_merge_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    if (self%op == OP_CAT) call cfg%set('axis', int_text(self%axis))
  end subroutine merge_options

  ! A merge layer always has two or more inputs; the single-input forward is never called by
  ! the network and copies its input.
  subroutine merge_forward_r32(self, x, y)
    class(fkb_merge_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    y = x
  end subroutine merge_forward_r32

  subroutine merge_forward_r64(self, x, y)
    class(fkb_merge_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    y = x
  end subroutine merge_forward_r64

  subroutine merge_multi_r32(self, xs, y)
    class(fkb_merge_t), intent(in) :: self
    type(view32_t), intent(in) :: xs(:)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer, parameter :: wp = real32
    include 'kernels/merge.inc'
  end subroutine merge_multi_r32

  subroutine merge_multi_r64(self, xs, y)
    class(fkb_merge_t), intent(in) :: self
    type(view64_t), intent(in) :: xs(:)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer, parameter :: wp = real64
    include 'kernels/merge.inc'
  end subroutine merge_multi_r64

  logical function merge_supports_training(self)
    class(fkb_merge_t), intent(in) :: self
    merge_supports_training = .true.
  end function merge_supports_training

  ! Backward as TensorFlow differentiates Keras' left-to-right forward: Maximum/Minimum pass
  ! dy to the input selected (ties: the earliest, TF's x >= y mask), Multiply the product of
  ! the others, Average dy / K, Concatenate each input's slice.
  subroutine merge_backward_r32(self, xs, y, cache, dy, dxs, grads, need_dx)
    class(fkb_merge_t), intent(in) :: self
    type(view32_t), intent(in) :: xs(:)
    real(real32), intent(in), contiguous :: y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :)
    type(view32_t), intent(in) :: dxs(:)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx(:)
    integer, parameter :: wp = real32
    include 'kernels/merge_backward.inc'
  end subroutine merge_backward_r32

  subroutine merge_backward_r64(self, xs, y, cache, dy, dxs, grads, need_dx)
    class(fkb_merge_t), intent(in) :: self
    type(view64_t), intent(in) :: xs(:)
    real(real64), intent(in), contiguous :: y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :)
    type(view64_t), intent(in) :: dxs(:)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx(:)
    integer, parameter :: wp = real64
    include 'kernels/merge_backward.inc'
  end subroutine merge_backward_r64

end module fkb_layer_merge
