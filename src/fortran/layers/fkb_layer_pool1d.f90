!! Keras 3 1-D pooling (channels_last): MaxPooling1D, AveragePooling1D (pool_size, strides,
!! padding valid|same) and GlobalAveragePooling1D, GlobalMaxPooling1D (keepdims).
!!
!! A batch arrives as x(C, T*batch). `same` padding follows TensorFlow: T' = ceil(T/s),
!! pad_total = max((T'-1)*s + pool_size - T, 0), pad_total/2 on the left; padded steps take no
!! part (max over the real steps, average divided by the number of real steps).
module fkb_layer_pool1d
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_SHAPE, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_pool1d_t

  type, extends(fkb_layer_t) :: fkb_pool1d_t
    logical :: is_max = .true.                     !! max, else average
    logical :: global = .false.                    !! global_*_pooling1d
    logical :: keepdims = .false.                  !! global: output (1, C) instead of (C,)
    integer(int64) :: pool = 1, stride = 1
    character(len=:), allocatable :: padding       !! valid | same
    integer(int64) :: steps = 0, channels = 0, out_steps = 1, pad_left = 0
  contains
    procedure :: configure => pool_configure
    procedure :: options => pool_options
    procedure :: forward_r32 => pool_forward_r32
    procedure :: forward_r64 => pool_forward_r64
  end type fkb_pool1d_t

contains

  subroutine pool_configure(self, cfg, stat, msg)
    class(fkb_pool1d_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: total
    self%is_max = self%type_name == 'max_pooling1d' .or. self%type_name == 'global_max_pooling1d'
    self%global = self%type_name(1:7) == 'global_'
    if (self%global) then
      call cfg%get_bool('keepdims', self%keepdims, stat, msg)
    else
      call cfg%get_int('pool_size', self%pool, stat, msg)
      if (stat == FKB_OK) call cfg%get_int('strides', self%stride, stat, msg)
      if (stat == FKB_OK) call cfg%get_text('padding', self%padding, stat, msg)
    end if
    if (stat /= FKB_OK) return
    if (.not. self%global) then
      if (self%pool < 1 .or. self%stride < 1) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': pool_size and strides ' // &
                       'must be at least 1, got ' // int_text(self%pool) // ' and ' // &
                       int_text(self%stride))
        return
      end if
      if (self%padding /= 'valid' .and. self%padding /= 'same') then
        call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ': padding must be ' // &
                       "valid or same, got '" // self%padding // "'")
        return
      end if
    end if
    if (size(self%in_shapes(1)%d) /= 2) then
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': needs (steps, channels) ' // &
                     'input, got a per-sample shape of rank ' // &
                     int_text(int(size(self%in_shapes(1)%d), int64)))
      return
    end if
    self%steps = self%in_shapes(1)%d(1)
    self%channels = self%in_shapes(1)%d(2)
    if (self%global) then
      self%out_steps = 1
      self%n_out = self%channels
      if (self%keepdims) then
        self%out_shape = [1_int64, self%channels]
      else
        self%out_shape = [self%channels]
      end if
      return
    end if
    if (self%padding == 'valid') then
      if (self%pool > self%steps) then
        call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': pool_size ' // &
                       int_text(self%pool) // ' is wider than the ' // int_text(self%steps) &
                       // ' steps of its input (padding valid)')
        return
      end if
      self%out_steps = (self%steps - self%pool) / self%stride + 1
      self%pad_left = 0
    else
      self%out_steps = (self%steps + self%stride - 1) / self%stride
      total = max((self%out_steps - 1) * self%stride + self%pool - self%steps, 0_int64)
      self%pad_left = total / 2
    end if
    self%n_out = self%out_steps * self%channels
    self%out_shape = [self%out_steps, self%channels]
  end subroutine pool_configure

  subroutine pool_options(self, cfg)
    class(fkb_pool1d_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    if (self%global) then
      call cfg%set('keepdims', merge('1', '0', self%keepdims))
    else
      call cfg%set('pool_size', int_text(self%pool))
      call cfg%set('strides', int_text(self%stride))
      call cfg%set('padding', self%padding)
    end if
  end subroutine pool_options

  subroutine pool_forward_r32(self, x, y)
    class(fkb_pool1d_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    call pool_r32(self, self%channels, self%steps, self%out_steps, size(x, 2, kind=int64), x, y)
  end subroutine pool_forward_r32

  subroutine pool_r32(self, c, t, to, nb, x, y)
    ! x(T*C, batch) seen as x(C, T, batch), y as y(C, T', batch).
    integer, parameter :: wp = real32
    class(fkb_pool1d_t), intent(in) :: self
    integer(int64), intent(in) :: c, t, to, nb
    real(wp), intent(in) :: x(c, t, nb)
    real(wp), intent(inout) :: y(c, to, nb)
    include 'kernels/pool1d.inc'
  end subroutine pool_r32

  subroutine pool_forward_r64(self, x, y)
    class(fkb_pool1d_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    call pool_r64(self, self%channels, self%steps, self%out_steps, size(x, 2, kind=int64), x, y)
  end subroutine pool_forward_r64

  subroutine pool_r64(self, c, t, to, nb, x, y)
    ! x(T*C, batch) seen as x(C, T, batch), y as y(C, T', batch).
    integer, parameter :: wp = real64
    class(fkb_pool1d_t), intent(in) :: self
    integer(int64), intent(in) :: c, t, to, nb
    real(wp), intent(in) :: x(c, t, nb)
    real(wp), intent(inout) :: y(c, to, nb)
    include 'kernels/pool1d.inc'
  end subroutine pool_r64

end module fkb_layer_pool1d
