!! LayerNormalization over the features of each sample, in the order Keras 3 evaluates it:
!! inv = gamma / sqrt(var + eps), y = x * inv + (beta - mean * inv).
module fkb_layer_layernorm
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t, real_text
  use fkb_layer, only: fkb_layer_t
  use fkb_tensor, only: fkb_tensor_t
  implicit none
  private
  public :: fkb_layernorm_t

  type, extends(fkb_layer_t) :: fkb_layernorm_t
    real(real64) :: epsilon = 1e-3_real64
    logical :: center = .true., scale = .true.
  contains
    procedure :: configure => ln_configure
    procedure :: acts_on_last_axis => ln_last_axis
    procedure :: options => ln_options
    procedure :: forward_r32 => ln_forward_r32
    procedure :: forward_r64 => ln_forward_r64
    procedure :: supports_training => ln_supports_training
    procedure :: backward_r32 => ln_backward_r32
    procedure :: backward_r64 => ln_backward_r64
  end type fkb_layernorm_t

contains

  logical function ln_last_axis(self)
    !! Applied at every position of the leading axes of rank > 1 data (Keras: axis=-1).
    class(fkb_layernorm_t), intent(in) :: self
    ln_last_axis = .true.
  end function ln_last_axis

  subroutine ln_configure(self, cfg, stat, msg)
    class(fkb_layernorm_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=5) :: names(2)
    integer :: k
    self%n_out = self%n_in
    call cfg%get_real('epsilon', self%epsilon, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('center', self%center, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('scale', self%scale, stat, msg)
    if (stat /= FKB_OK) return
    k = 0
    if (self%scale) then
      k = k + 1
      names(k) = 'gamma'
    end if
    if (self%center) then
      k = k + 1
      names(k) = 'beta'
    end if
    call self%declare_params(names(1:k), spread([self%n_in], 2, k))
  end subroutine ln_configure

  subroutine ln_options(self, cfg)
    class(fkb_layernorm_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('epsilon', real_text(self%epsilon))
    call cfg%set('center', merge('1', '0', self%center))
    call cfg%set('scale', merge('1', '0', self%scale))
  end subroutine ln_options

  subroutine ln_forward_r32(self, x, y)
    class(fkb_layernorm_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer, parameter :: wp = real32
    integer(int64) :: j
    real(wp) :: mean, var
    do j = 1, size(x, 2, kind=int64)
      mean = sum(x(:, j)) / self%n_in
      var = sum((x(:, j) - mean)**2) / self%n_in
      y(:, j) = 1 / sqrt(var + real(self%epsilon, wp))
      if (self%scale) y(:, j) = y(:, j) * self%params(1)%r32
      if (self%center) then
        y(:, j) = x(:, j) * y(:, j) + (self%params(size(self%params))%r32 - mean * y(:, j))
      else
        y(:, j) = x(:, j) * y(:, j) - mean * y(:, j)
      end if
    end do
  end subroutine ln_forward_r32

  subroutine ln_forward_r64(self, x, y)
    class(fkb_layernorm_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer, parameter :: wp = real64
    integer(int64) :: j
    real(wp) :: mean, var
    do j = 1, size(x, 2, kind=int64)
      mean = sum(x(:, j)) / self%n_in
      var = sum((x(:, j) - mean)**2) / self%n_in
      y(:, j) = 1 / sqrt(var + real(self%epsilon, wp))
      if (self%scale) y(:, j) = y(:, j) * self%params(1)%r64
      if (self%center) then
        y(:, j) = x(:, j) * y(:, j) + (self%params(size(self%params))%r64 - mean * y(:, j))
      else
        y(:, j) = x(:, j) * y(:, j) - mean * y(:, j)
      end if
    end do
  end subroutine ln_forward_r64

  logical function ln_supports_training(self)
    class(fkb_layernorm_t), intent(in) :: self
    ln_supports_training = .true.
  end function ln_supports_training

  subroutine ln_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    ! Per sample: xhat = (x - mean) rstd; dxhat = gamma dy;
    ! dx = rstd/N (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)).
    class(fkb_layernorm_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    real(real32) :: xhat(self%n_in), dxh(self%n_in), mean, var, rstd
    integer(int64) :: j, nf
    nf = self%n_in
    if (self%scale) grads(1)%r32 = 0
    if (self%center) grads(size(grads))%r32 = 0
    do j = 1, size(x, 2, int64)
      mean = sum(x(:, j)) / nf
      var = sum((x(:, j) - mean)**2) / nf
      rstd = 1 / sqrt(var + real(self%epsilon, real32))
      xhat = (x(:, j) - mean) * rstd
      if (self%scale) grads(1)%r32 = grads(1)%r32 + dy(:, j) * xhat
      if (self%center) grads(size(grads))%r32 = grads(size(grads))%r32 + dy(:, j)
      if (.not. need_dx) cycle
      dxh = dy(:, j)
      if (self%scale) dxh = dxh * self%params(1)%r32
      dx(:, j) = rstd / nf * (nf * dxh - sum(dxh) - xhat * sum(dxh * xhat))
    end do
  end subroutine ln_backward_r32

  subroutine ln_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    ! Per sample: xhat = (x - mean) rstd; dxhat = gamma dy;
    ! dx = rstd/N (N dxhat - sum(dxhat) - xhat sum(dxhat xhat)).
    class(fkb_layernorm_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    real(real64) :: xhat(self%n_in), dxh(self%n_in), mean, var, rstd
    integer(int64) :: j, nf
    nf = self%n_in
    if (self%scale) grads(1)%r64 = 0
    if (self%center) grads(size(grads))%r64 = 0
    do j = 1, size(x, 2, int64)
      mean = sum(x(:, j)) / nf
      var = sum((x(:, j) - mean)**2) / nf
      rstd = 1 / sqrt(var + real(self%epsilon, real64))
      xhat = (x(:, j) - mean) * rstd
      if (self%scale) grads(1)%r64 = grads(1)%r64 + dy(:, j) * xhat
      if (self%center) grads(size(grads))%r64 = grads(size(grads))%r64 + dy(:, j)
      if (.not. need_dx) cycle
      dxh = dy(:, j)
      if (self%scale) dxh = dxh * self%params(1)%r64
      dx(:, j) = rstd / nf * (nf * dxh - sum(dxh) - xhat * sum(dxh * xhat))
    end do
  end subroutine ln_backward_r64

end module fkb_layer_layernorm
