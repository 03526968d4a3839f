!! LayerNormalization over the features of each sample, in the order Keras 3 evaluates it:
!! inv = gamma / sqrt(var + eps), y = x * inv + (beta - mean * inv).
module fkb_layer_layernorm
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK
  use fkb_config, only: fkb_config_t, real_text
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_layernorm_t

  type, extends(fkb_layer_t) :: fkb_layernorm_t
    real(real64) :: epsilon = 1e-3_real64
    logical :: center = .true., scale = .true.
  contains
    procedure :: configure => ln_configure
    procedure :: options => ln_options
    procedure :: forward_r32 => ln_forward_r32
    procedure :: forward_r64 => ln_forward_r64
  end type fkb_layernorm_t

contains

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

end module fkb_layer_layernorm
