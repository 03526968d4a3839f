!! BatchNormalization at inference: y = x * inv + shift with inv = gamma / sqrt(var + eps) and
!! shift = beta - mean * inv, the form TensorFlow's batch_normalization evaluates.
module fkb_layer_batchnorm
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t, real_text
  use fkb_tensor, only: fkb_tensor_t
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_batchnorm_t

  type, extends(fkb_layer_t) :: fkb_batchnorm_t
    real(real64) :: epsilon = 1e-3_real64
    logical :: center = .true., scale = .true.
    type(fkb_tensor_t) :: inv, shift   !! derived in `prepare`
  contains
    procedure :: configure => bn_configure
    procedure :: options => bn_options
    procedure :: prepare => bn_prepare
    procedure :: tensor_trainable => bn_tensor_trainable
    procedure :: forward_r32 => bn_forward_r32
    procedure :: forward_r64 => bn_forward_r64
  end type fkb_batchnorm_t

contains

  subroutine bn_configure(self, cfg, stat, msg)
    class(fkb_batchnorm_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=15) :: names(4)
    integer :: k
    self%n_out = self%n_in
    call cfg%get_real('epsilon', self%epsilon, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('center', self%center, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('scale', self%scale, stat, msg)
    if (stat /= FKB_OK) return
    k = 0
    if (self%scale) call push('gamma')
    if (self%center) call push('beta')
    call push('moving_mean')
    call push('moving_variance')
    call self%declare_params(names(1:k), spread([self%n_in], 2, k))
  contains
    subroutine push(name)
      character(len=*), intent(in) :: name
      k = k + 1
      names(k) = name
    end subroutine push
  end subroutine bn_configure

  subroutine bn_options(self, cfg)
    class(fkb_batchnorm_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('epsilon', real_text(self%epsilon))
    call cfg%set('center', merge('1', '0', self%center))
    call cfg%set('scale', merge('1', '0', self%scale))
  end subroutine bn_options

  logical function bn_tensor_trainable(self, k)
    ! gamma and beta are weights; the moving statistics (the last two tensors) are state.
    class(fkb_batchnorm_t), intent(in) :: self
    integer, intent(in) :: k
    bn_tensor_trainable = self%trainable .and. k <= size(self%params) - 2
  end function bn_tensor_trainable

  subroutine bn_prepare(self, stat, msg)
    class(fkb_batchnorm_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    real(real64), allocatable :: inv(:), shift(:)
    integer :: k
    stat = FKB_OK
    k = size(self%params)   ! ..., moving_mean (k-1), moving_variance (k)
    inv = 1 / sqrt(self%params(k)%values() + self%epsilon)
    if (self%scale) inv = inv * self%params(1)%values()
    shift = -self%params(k - 1)%values() * inv
    if (self%center) shift = shift + self%params(merge(2, 1, self%scale))%values()
    call self%inv%assign(inv, self%dtype)
    call self%shift%assign(shift, self%dtype)
  end subroutine bn_prepare

  subroutine bn_forward_r32(self, x, y)
    class(fkb_batchnorm_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      y(:, j) = x(:, j) * self%inv%r32 + self%shift%r32
    end do
  end subroutine bn_forward_r32

  subroutine bn_forward_r64(self, x, y)
    class(fkb_batchnorm_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64) :: j
    do j = 1, size(x, 2, kind=int64)
      y(:, j) = x(:, j) * self%inv%r64 + self%shift%r64
    end do
  end subroutine bn_forward_r64

end module fkb_layer_batchnorm
