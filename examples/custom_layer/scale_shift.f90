! A user's own layer type, added to FKB without touching FKB: y = a * x + offset, with a
! scalar option `a` and a learned vector `offset` (one value per feature). Registered under
! the name 'scale_shift', it loads from any .fkb file whose header has
!     layer scale_shift name=... a=2.0
!     tensor offset float32 N
! and it can be trained (backward: dx = a dy, d offset = sum over the batch of dy).
module scale_shift_layer
  use iso_fortran_env, only: real32, real64, int64
  use fkb, only: fkb_layer_t, fkb_config_t, fkb_tensor_t, FKB_OK
  implicit none
  private
  public :: scale_shift

  type, extends(fkb_layer_t) :: scale_shift
    real(real64) :: a = 1
  contains
    procedure :: configure => ss_configure
    procedure :: options => ss_options
    procedure :: forward_r32 => ss_forward_r32
    procedure :: forward_r64 => ss_forward_r64
    procedure :: supports_training => ss_supports_training
    procedure :: backward_r32 => ss_backward_r32
    procedure :: backward_r64 => ss_backward_r64
  end type scale_shift

contains

  subroutine ss_configure(self, cfg, stat, msg)
    ! Reads the options (every option must be read: unknown ones make the file invalid),
    ! sets the output width and declares the tensors the file must hold.
    class(scale_shift), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    call cfg%get_real('a', self%a, stat, msg, default=1.0_real64)
    self%n_out = self%n_in
    call self%declare_params(['offset'], reshape([self%n_in], [1, 1]))
  end subroutine ss_configure

  subroutine ss_options(self, cfg)
    ! Writes the options back, for `save`.
    class(scale_shift), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    character(len=32) :: text
    write (text, '(es24.16e3)') self%a
    call cfg%set('a', trim(adjustl(text)))
  end subroutine ss_options

  subroutine ss_forward_r32(self, x, y)
    class(scale_shift), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, int64)
      y(:, j) = real(self%a, real32) * x(:, j) + self%params(1)%r32
    end do
  end subroutine ss_forward_r32

  subroutine ss_forward_r64(self, x, y)
    class(scale_shift), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, int64)
      y(:, j) = self%a * x(:, j) + self%params(1)%r64
    end do
  end subroutine ss_forward_r64

  logical function ss_supports_training(self)
    class(scale_shift), intent(in) :: self
    ss_supports_training = .true.
  end function ss_supports_training

  subroutine ss_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(scale_shift), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    grads(1)%r32 = sum(dy, dim=2)
    if (need_dx) dx = real(self%a, real32) * dy
  end subroutine ss_backward_r32

  subroutine ss_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(scale_shift), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    grads(1)%r64 = sum(dy, dim=2)
    if (need_dx) dx = self%a * dy
  end subroutine ss_backward_r64

end module scale_shift_layer
