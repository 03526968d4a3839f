!! Keras' Normalization preprocessing layer: (x - mean) / max(sqrt(var), 1e-7), or with
!! invert=True mean + x * max(sqrt(var), 1e-7). Not trainable.
module fkb_layer_normalization
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t
  use fkb_tensor, only: fkb_tensor_t
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_normalization_t

  real(real64), parameter :: KERAS_EPSILON = 1e-7_real64

  type, extends(fkb_layer_t) :: fkb_normalization_t
    logical :: invert = .false.
    type(fkb_tensor_t) :: denom   !! max(sqrt(variance), epsilon), derived in `prepare`
  contains
    procedure :: configure => norm_configure
    procedure :: acts_on_last_axis => norm_last_axis
    procedure :: options => norm_options
    procedure :: prepare => norm_prepare
    procedure :: tensor_trainable => norm_tensor_trainable
    procedure :: supports_training => norm_supports_training
    procedure :: backward_r32 => norm_backward_r32
    procedure :: backward_r64 => norm_backward_r64
    procedure :: forward_r32 => norm_forward_r32
    procedure :: forward_r64 => norm_forward_r64
  end type fkb_normalization_t

contains

  logical function norm_last_axis(self)
    !! Applied at every position of the leading axes of rank > 1 data (Keras: axis=-1).
    class(fkb_normalization_t), intent(in) :: self
    norm_last_axis = .true.
  end function norm_last_axis

  subroutine norm_configure(self, cfg, stat, msg)
    class(fkb_normalization_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    self%n_out = self%n_in
    call cfg%get_bool('invert', self%invert, stat, msg, default=.false.)
    if (stat /= FKB_OK) return
    call self%declare_params([character(len=8) :: 'mean', 'variance'], spread([self%n_in], 2, 2))
  end subroutine norm_configure

  subroutine norm_options(self, cfg)
    class(fkb_normalization_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('invert', merge('1', '0', self%invert))
  end subroutine norm_options

  logical function norm_tensor_trainable(self, k)
    ! The adapted mean and variance are state, not weights.
    class(fkb_normalization_t), intent(in) :: self
    integer, intent(in) :: k
    norm_tensor_trainable = .false.
  end function norm_tensor_trainable

  subroutine norm_prepare(self, stat, msg)
    class(fkb_normalization_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    stat = FKB_OK
    ! sqrt in the network's precision, as Keras takes it, then the floor.
    if (allocated(self%params(2)%r32)) then
      call self%denom%assign(real(max(sqrt(self%params(2)%r32), real(KERAS_EPSILON, real32)), &
                                  real64), self%dtype)
    else
      call self%denom%assign(max(sqrt(self%params(2)%r64), KERAS_EPSILON), self%dtype)
    end if
  end subroutine norm_prepare

  subroutine norm_forward_r32(self, x, y)
    class(fkb_normalization_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      if (self%invert) then
        y(:, j) = self%params(1)%r32 + x(:, j) * self%denom%r32
      else
        y(:, j) = (x(:, j) - self%params(1)%r32) / self%denom%r32
      end if
    end do
  end subroutine norm_forward_r32

  subroutine norm_forward_r64(self, x, y)
    class(fkb_normalization_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      if (self%invert) then
        y(:, j) = self%params(1)%r64 + x(:, j) * self%denom%r64
      else
        y(:, j) = (x(:, j) - self%params(1)%r64) / self%denom%r64
      end if
    end do
  end subroutine norm_forward_r64

  logical function norm_supports_training(self)
    class(fkb_normalization_t), intent(in) :: self
    norm_supports_training = .true.
  end function norm_supports_training

  subroutine norm_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_normalization_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: j
    grads(1)%r32 = 0
    grads(2)%r32 = 0
    if (.not. need_dx) return
    do j = 1, size(x, 2, int64)
      if (self%invert) then
        dx(:, j) = dy(:, j) * self%denom%r32
      else
        dx(:, j) = dy(:, j) / self%denom%r32
      end if
    end do
  end subroutine norm_backward_r32

  subroutine norm_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_normalization_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    integer(int64) :: j
    grads(1)%r64 = 0
    grads(2)%r64 = 0
    if (.not. need_dx) return
    do j = 1, size(x, 2, int64)
      if (self%invert) then
        dx(:, j) = dy(:, j) * self%denom%r64
      else
        dx(:, j) = dy(:, j) / self%denom%r64
      end if
    end do
  end subroutine norm_backward_r64

end module fkb_layer_normalization
