!! Layers that are the identity at inference: Keras `Dropout` (its rate is kept for the file
!! and for training) and `Flatten` of rank-1 samples. The network skips them when running.
module fkb_layer_identity
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, set_error
  use fkb_config, only: fkb_config_t, real_text
  use fkb_layer, only: fkb_layer_t
  use fkb_random, only: mix64, uniform_open
  use fkb_tensor, only: fkb_tensor_t
  implicit none
  private
  public :: fkb_identity_t

  type, extends(fkb_layer_t) :: fkb_identity_t
    real(real64) :: rate = 0   !! Dropout only
  contains
    procedure :: configure => id_configure
    procedure :: options => id_options
    procedure :: forward_r32 => id_forward_r32
    procedure :: forward_r64 => id_forward_r64
    procedure :: is_identity => id_is_identity
    procedure :: is_stochastic => id_is_stochastic
    procedure :: sample_r32 => id_sample_r32
    procedure :: sample_r64 => id_sample_r64
    procedure :: supports_training => id_supports_training
    procedure :: cache_size => id_cache_size
    procedure :: train_forward_r32 => id_train_forward_r32
    procedure :: train_forward_r64 => id_train_forward_r64
    procedure :: backward_r32 => id_backward_r32
    procedure :: backward_r64 => id_backward_r64
  end type fkb_identity_t

contains

  subroutine id_configure(self, cfg, stat, msg)
    class(fkb_identity_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    self%n_out = self%n_in
    stat = FKB_OK
    if (self%type_name == 'flatten') self%out_shape = [self%n_in]   ! the data does not move
    if (self%type_name == 'dropout') then
      call cfg%get_real('rate', self%rate, stat, msg)
      if (stat == FKB_OK .and. .not. (self%rate >= 0 .and. self%rate < 1)) &
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': rate must be in [0, 1)')
    end if
  end subroutine id_configure

  subroutine id_options(self, cfg)
    class(fkb_identity_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    if (self%type_name == 'dropout') call cfg%set('rate', real_text(self%rate))
  end subroutine id_options

  logical function id_is_identity(self)
    class(fkb_identity_t), intent(in) :: self
    id_is_identity = .true.
  end function id_is_identity

  logical function id_is_stochastic(self)
    class(fkb_identity_t), intent(in) :: self
    id_is_stochastic = self%type_name == 'dropout' .and. self%rate > 0
  end function id_is_stochastic

  subroutine id_sample_r32(self, x, y, key)
    ! Inverted dropout as Keras trains it: keep with probability 1-rate, scale by 1/(1-rate).
    class(fkb_identity_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    integer(int64), intent(in) :: key
    integer(int64) :: i, j, col
    real(real32) :: scale
    scale = real(1 / (1 - self%rate), real32)
    do j = 1, size(x, 2, int64)
      col = mix64(key, j)
      do i = 1, size(x, 1, int64)
        y(i, j) = merge(x(i, j) * scale, 0.0_real32, uniform_open(mix64(col, i)) > self%rate)
      end do
    end do
  end subroutine id_sample_r32

  subroutine id_sample_r64(self, x, y, key)
    class(fkb_identity_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    integer(int64), intent(in) :: key
    integer(int64) :: i, j, col
    real(real64) :: scale
    scale = 1 / (1 - self%rate)
    do j = 1, size(x, 2, int64)
      col = mix64(key, j)
      do i = 1, size(x, 1, int64)
        y(i, j) = merge(x(i, j) * scale, 0.0_real64, uniform_open(mix64(col, i)) > self%rate)
      end do
    end do
  end subroutine id_sample_r64

  subroutine id_forward_r32(self, x, y)
    class(fkb_identity_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    y = x
  end subroutine id_forward_r32

  subroutine id_forward_r64(self, x, y)
    class(fkb_identity_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    y = x
  end subroutine id_forward_r64

  logical function id_supports_training(self)
    class(fkb_identity_t), intent(in) :: self
    id_supports_training = .true.
  end function id_supports_training

  integer(int64) function id_cache_size(self)
    class(fkb_identity_t), intent(in) :: self
    id_cache_size = merge(self%n_in, 0_int64, self%is_stochastic())
  end function id_cache_size

  subroutine id_train_forward_r32(self, x, y, cache, key)
    ! Training-mode Dropout keeps its scaled mask (0 or 1/(1-rate)) for the backward pass.
    class(fkb_identity_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    if (self%is_stochastic()) then
      cache = 1
      call self%sample(cache, y, key)      ! y = the mask
      cache = y
      y = x * cache
    else
      y = x
    end if
  end subroutine id_train_forward_r32

  subroutine id_backward_r32(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_identity_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real32), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    if (.not. need_dx) return
    if (self%is_stochastic()) then
      dx = dy * cache
    else
      dx = dy
    end if
  end subroutine id_backward_r32

  subroutine id_train_forward_r64(self, x, y, cache, key)
    ! Training-mode Dropout keeps its scaled mask (0 or 1/(1-rate)) for the backward pass.
    class(fkb_identity_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :), cache(:, :)
    integer(int64), intent(in) :: key
    if (self%is_stochastic()) then
      cache = 1
      call self%sample(cache, y, key)      ! y = the mask
      cache = y
      y = x * cache
    else
      y = x
    end if
  end subroutine id_train_forward_r64

  subroutine id_backward_r64(self, x, y, cache, dy, dx, grads, need_dx, dz_given)
    class(fkb_identity_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :), y(:, :), cache(:, :)
    real(real64), intent(inout), contiguous :: dy(:, :), dx(:, :)
    type(fkb_tensor_t), intent(inout) :: grads(:)
    logical, intent(in) :: need_dx, dz_given
    if (.not. need_dx) return
    if (self%is_stochastic()) then
      dx = dy * cache
    else
      dx = dy
    end if
  end subroutine id_backward_r64

end module fkb_layer_identity
