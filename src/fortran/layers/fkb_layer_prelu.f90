!! PReLU with one learned slope per unit: y = relu(x) - alpha * relu(-x), as Keras computes it.
module fkb_layer_prelu
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t
  use fkb_layer, only: fkb_layer_t
  use fkb_tensor, only: fkb_tensor_t
  implicit none
  private
  public :: fkb_prelu_t

  type, extends(fkb_layer_t) :: fkb_prelu_t
  contains
    procedure :: configure => prelu_configure
    procedure :: options => prelu_options
    procedure :: forward_r32 => prelu_forward_r32
    procedure :: forward_r64 => prelu_forward_r64
    procedure :: supports_training => prelu_supports_training
    procedure :: backward_r32 => prelu_backward_r32
    procedure :: backward_r64 => prelu_backward_r64
  end type fkb_prelu_t

contains

  subroutine prelu_configure(self, cfg, stat, msg)
    class(fkb_prelu_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    stat = FKB_OK
    self%n_out = self%n_in
    ! Keras' alpha has the whole per-sample shape (shared_axes is refused by the converter).
    call self%declare_params(['alpha'], reshape(self%in_shapes(1)%d, [size(self%in_shapes(1)%d), 1]))
  end subroutine prelu_configure

  subroutine prelu_options(self, cfg)
    class(fkb_prelu_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
  end subroutine prelu_options

  subroutine prelu_forward_r32(self, x, y)
    class(fkb_prelu_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      y(:, j) = max(x(:, j), 0.0_real32) + (-self%params(1)%r32) * max(-x(:, j), 0.0_real32)
    end do
  end subroutine prelu_forward_r32

  subroutine prelu_forward_r64(self, x, y)
    class(fkb_prelu_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      y(:, j) = max(x(:, j), 0.0_real64) + (-self%params(1)%r64) * max(-x(:, j), 0.0_real64)
    end do
  end subroutine prelu_forward_r64

  logical function prelu_supports_training(self)
    class(fkb_prelu_t), intent(in) :: self
    prelu_supports_training = .true.
  end function prelu_supports_training

  subroutine prelu_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    ! y = relu(x) - alpha relu(-x): dy/dx = 1 (x > 0), alpha (x < 0); dy/dalpha = -relu(-x).
    class(fkb_prelu_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: j
    grads(1)%r32 = 0
    do j = 1, size(x, 2, int64)
      grads(1)%r32 = grads(1)%r32 - dy(:, j) * max(-x(:, j), 0.0_real32)
      if (need_dx) dx(:, j) = dy(:, j) * (merge(1.0_real32, 0.0_real32, x(:, j) > 0) + &
                                          self%params(1)%r32 * merge(1.0_real32, 0.0_real32, x(:, j) < 0))
    end do
  end subroutine prelu_backward_r32

  subroutine prelu_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    ! y = relu(x) - alpha relu(-x): dy/dx = 1 (x > 0), alpha (x < 0); dy/dalpha = -relu(-x).
    class(fkb_prelu_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: j
    grads(1)%r64 = 0
    do j = 1, size(x, 2, int64)
      grads(1)%r64 = grads(1)%r64 - dy(:, j) * max(-x(:, j), 0.0_real64)
      if (need_dx) dx(:, j) = dy(:, j) * (merge(1.0_real64, 0.0_real64, x(:, j) > 0) + &
                                          self%params(1)%r64 * merge(1.0_real64, 0.0_real64, x(:, j) < 0))
    end do
  end subroutine prelu_backward_r64

end module fkb_layer_prelu
