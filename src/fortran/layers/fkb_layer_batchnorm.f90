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
    real(real64) :: momentum = 0.99_real64   !! of the moving statistics, in training
    logical :: center = .true., scale = .true.
    type(fkb_tensor_t) :: inv, shift   !! derived in `prepare`
  contains
    procedure :: configure => bn_configure
    procedure :: acts_on_last_axis => bn_last_axis
    procedure :: options => bn_options
    procedure :: prepare => bn_prepare
    procedure :: tensor_trainable => bn_tensor_trainable
    procedure :: supports_training => bn_supports_training
    procedure :: cache_size => bn_cache_size
    procedure :: train_forward_r32 => bn_train_forward_r32
    procedure :: train_forward_r64 => bn_train_forward_r64
    procedure :: backward_r32 => bn_backward_r32
    procedure :: backward_r64 => bn_backward_r64
    procedure :: update_state => bn_update_state
    procedure :: has_state => bn_has_state
    procedure :: forward_r32 => bn_forward_r32
    procedure :: forward_r64 => bn_forward_r64
  end type fkb_batchnorm_t

contains

  logical function bn_last_axis(self)
    !! Applied at every position of the leading axes of rank > 1 data (Keras: axis=-1).
    class(fkb_batchnorm_t), intent(in) :: self
    bn_last_axis = .true.
  end function bn_last_axis

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
    if (stat == FKB_OK) call cfg%get_real('momentum', self%momentum, stat, msg, &
                                          default=0.99_real64)
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
    if (self%momentum /= 0.99_real64) call cfg%set('momentum', real_text(self%momentum))
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

  logical function bn_supports_training(self)
    class(fkb_batchnorm_t), intent(in) :: self
    bn_supports_training = .true.
  end function bn_supports_training

  integer(int64) function bn_cache_size(self)
    class(fkb_batchnorm_t), intent(in) :: self
    bn_cache_size = self%n_in
  end function bn_cache_size

  logical function bn_has_state(self)
    class(fkb_batchnorm_t), intent(in) :: self
    bn_has_state = .true.
  end function bn_has_state

  subroutine bn_update_state(self, x)
    ! moving = moving * momentum + batch * (1 - momentum), for mean and (biased) variance.
    class(fkb_batchnorm_t), intent(inout) :: self
    real(real64), intent(in) :: x(:, :)
    real(real64) :: mean(self%n_in), var(self%n_in)
    integer :: k, st
    character(len=:), allocatable :: msg
    call moments_r64(x, mean, var)
    k = size(self%params)
    call self%params(k - 1)%assign(self%params(k - 1)%values() * self%momentum + &
                                   mean * (1 - self%momentum), self%dtype)
    call self%params(k)%assign(self%params(k)%values() * self%momentum + &
                               var * (1 - self%momentum), self%dtype)
    call self%prepare(st, msg)
  end subroutine bn_update_state

  subroutine bn_train_forward_r32(self, x, y, cache, key)
    ! Training mode: normalise with the batch's own mean and (biased) variance, as Keras.
    class(fkb_batchnorm_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    real(real32) :: mean(self%n_in), var(self%n_in), inv(self%n_in), shift(self%n_in)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    call moments_r32(x, mean, var)
    inv = 1 / sqrt(var + real(self%epsilon, real32))
    do j = 1, n
      cache(:, j) = (x(:, j) - mean) * inv          ! xhat, for the backward pass
    end do
    if (self%scale) inv = inv * self%params(1)%r32
    shift = -mean * inv
    if (self%center) shift = shift + self%params(merge(2, 1, self%scale))%r32
    do j = 1, n
      y(:, j) = x(:, j) * inv + shift
    end do
  end subroutine bn_train_forward_r32

  subroutine bn_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_batchnorm_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    real(real32) :: mean(self%n_in), var(self%n_in), rstd(self%n_in), gamma(self%n_in)
    real(real32) :: sdy(self%n_in), sdyx(self%n_in)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    sdy = sum(dy, dim=2)
    sdyx = sum(dy * cache, dim=2)
    if (self%scale) grads(1)%r32 = sdyx
    if (self%center) grads(merge(2, 1, self%scale))%r32 = sdy
    grads(size(grads) - 1)%r32 = 0
    grads(size(grads))%r32 = 0
    if (.not. need_dx) return
    call moments_r32(x, mean, var)
    rstd = 1 / sqrt(var + real(self%epsilon, real32))
    gamma = 1
    if (self%scale) gamma = self%params(1)%r32
    do j = 1, n
      dx(:, j) = gamma * rstd / n * (n * dy(:, j) - sdy - cache(:, j) * sdyx)
    end do
  end subroutine bn_backward_r32

  subroutine moments_r32(x, mean, var)
    real(real32), intent(in) :: x(:, :)
    real(real32), intent(out) :: mean(:), var(:)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    mean = sum(x, dim=2) / n
    var = 0
    do j = 1, n
      var = var + (x(:, j) - mean)**2
    end do
    var = var / n
  end subroutine moments_r32

  subroutine bn_train_forward_r64(self, x, y, cache, key)
    ! Training mode: normalise with the batch's own mean and (biased) variance, as Keras.
    class(fkb_batchnorm_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    real(real64) :: mean(self%n_in), var(self%n_in), inv(self%n_in), shift(self%n_in)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    call moments_r64(x, mean, var)
    inv = 1 / sqrt(var + real(self%epsilon, real64))
    do j = 1, n
      cache(:, j) = (x(:, j) - mean) * inv          ! xhat, for the backward pass
    end do
    if (self%scale) inv = inv * self%params(1)%r64
    shift = -mean * inv
    if (self%center) shift = shift + self%params(merge(2, 1, self%scale))%r64
    do j = 1, n
      y(:, j) = x(:, j) * inv + shift
    end do
  end subroutine bn_train_forward_r64

  subroutine bn_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_batchnorm_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    real(real64) :: mean(self%n_in), var(self%n_in), rstd(self%n_in), gamma(self%n_in)
    real(real64) :: sdy(self%n_in), sdyx(self%n_in)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    sdy = sum(dy, dim=2)
    sdyx = sum(dy * cache, dim=2)
    if (self%scale) grads(1)%r64 = sdyx
    if (self%center) grads(merge(2, 1, self%scale))%r64 = sdy
    grads(size(grads) - 1)%r64 = 0
    grads(size(grads))%r64 = 0
    if (.not. need_dx) return
    call moments_r64(x, mean, var)
    rstd = 1 / sqrt(var + real(self%epsilon, real64))
    gamma = 1
    if (self%scale) gamma = self%params(1)%r64
    do j = 1, n
      dx(:, j) = gamma * rstd / n * (n * dy(:, j) - sdy - cache(:, j) * sdyx)
    end do
  end subroutine bn_backward_r64

  subroutine moments_r64(x, mean, var)
    real(real64), intent(in) :: x(:, :)
    real(real64), intent(out) :: mean(:), var(:)
    integer(int64) :: j, n
    n = size(x, 2, int64)
    mean = sum(x, dim=2) / n
    var = 0
    do j = 1, n
      var = var + (x(:, j) - mean)**2
    end do
    var = var / n
  end subroutine moments_r64

end module fkb_layer_batchnorm
