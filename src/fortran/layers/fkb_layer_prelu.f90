!! PReLU with one learned slope per unit: y = relu(x) - alpha * relu(-x), as Keras computes it.
module fkb_layer_prelu
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_prelu_t

  type, extends(fkb_layer_t) :: fkb_prelu_t
  contains
    procedure :: configure => prelu_configure
    procedure :: options => prelu_options
    procedure :: forward_r32 => prelu_forward_r32
    procedure :: forward_r64 => prelu_forward_r64
  end type fkb_prelu_t

contains

  subroutine prelu_configure(self, cfg, stat, msg)
    class(fkb_prelu_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    stat = FKB_OK
    self%n_out = self%n_in
    call self%declare_params(['alpha'], reshape([self%n_in], [1, 1]))
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

end module fkb_layer_prelu
