!! Keras 3 UpSampling1D (size), ZeroPadding1D (left, right) and Cropping1D (left, right):
!! (T, C) -> (T·size, C), (left+T+right, C), (T-left-right, C). Pure data movement; a batch is
!! seen as x(C, T, batch).
module fkb_layer_pad1d
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_SHAPE, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t
  implicit none
  private
  public :: fkb_pad1d_t

  integer, parameter :: OP_UP = 1, OP_PAD = 2, OP_CROP = 3

  type, extends(fkb_layer_t) :: fkb_pad1d_t
    integer :: op = OP_UP
    integer(int64) :: factor = 1                !! up_sampling1d: size
    integer(int64) :: left = 0, right = 0       !! zero_padding1d, cropping1d
    integer(int64) :: steps = 0, channels = 0, out_steps = 0
  contains
    procedure :: configure => pad_configure
    procedure :: options => pad_options
    procedure :: forward_r32 => pad_forward_r32
    procedure :: forward_r64 => pad_forward_r64
  end type fkb_pad1d_t

contains

  subroutine pad_configure(self, cfg, stat, msg)
    class(fkb_pad1d_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    select case (self%type_name)
    case ('up_sampling1d')
      self%op = OP_UP
      call cfg%get_int('size', self%factor, stat, msg)
      if (stat /= FKB_OK) return
      if (self%factor < 1) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': size must be at least 1, ' // &
                       'got ' // int_text(self%factor))
        return
      end if
    case default
      self%op = merge(OP_PAD, OP_CROP, self%type_name == 'zero_padding1d')
      call cfg%get_int('left', self%left, stat, msg)
      if (stat == FKB_OK) call cfg%get_int('right', self%right, stat, msg)
      if (stat /= FKB_OK) return
      if (self%left < 0 .or. self%right < 0) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': left and right must not ' // &
                       'be negative, got ' // int_text(self%left) // ' and ' // &
                       int_text(self%right))
        return
      end if
    end select
    if (size(self%in_shapes(1)%d) /= 2) then
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': needs (steps, channels) ' // &
                     'input, got a per-sample shape of rank ' // &
                     int_text(int(size(self%in_shapes(1)%d), int64)))
      return
    end if
    self%steps = self%in_shapes(1)%d(1)
    self%channels = self%in_shapes(1)%d(2)
    select case (self%op)
    case (OP_UP)
      if (self%factor > huge(1_int64) / self%n_in) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': size out of range')
        return
      end if
      self%out_steps = self%steps * self%factor
    case (OP_PAD)
      if (self%left > huge(1_int64) / 4 / self%channels .or. &
          self%right > huge(1_int64) / 4 / self%channels) then
        call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': padding out of range')
        return
      end if
      self%out_steps = self%left + self%steps + self%right
    case default
      if (self%left >= self%steps .or. self%right >= self%steps - self%left) then
        call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': cropping ' // &
                       int_text(self%left) // '+' // int_text(self%right) // &
                       ' leaves no step of the ' // int_text(self%steps) // ' of its input')
        return
      end if
      self%out_steps = self%steps - self%left - self%right
    end select
    self%n_out = self%out_steps * self%channels
    self%out_shape = [self%out_steps, self%channels]
  end subroutine pad_configure

  subroutine pad_options(self, cfg)
    class(fkb_pad1d_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    if (self%op == OP_UP) then
      call cfg%set('size', int_text(self%factor))
    else
      call cfg%set('left', int_text(self%left))
      call cfg%set('right', int_text(self%right))
    end if
  end subroutine pad_options

  subroutine pad_forward_r32(self, x, y)
    class(fkb_pad1d_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    call pad_r32(self, self%channels, self%steps, self%out_steps, size(x, 2, kind=int64), x, y)
  end subroutine pad_forward_r32

  subroutine pad_r32(self, c, t, to, nb, x, y)
    integer, parameter :: wp = real32
    class(fkb_pad1d_t), intent(in) :: self
    integer(int64), intent(in) :: c, t, to, nb
    real(wp), intent(in) :: x(c, t, nb)
    real(wp), intent(inout) :: y(c, to, nb)
    include 'kernels/pad1d.inc'
  end subroutine pad_r32

  subroutine pad_forward_r64(self, x, y)
    class(fkb_pad1d_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    call pad_r64(self, self%channels, self%steps, self%out_steps, size(x, 2, kind=int64), x, y)
  end subroutine pad_forward_r64

  subroutine pad_r64(self, c, t, to, nb, x, y)
    integer, parameter :: wp = real64
    class(fkb_pad1d_t), intent(in) :: self
    integer(int64), intent(in) :: c, t, to, nb
    real(wp), intent(in) :: x(c, t, nb)
    real(wp), intent(inout) :: y(c, to, nb)
    include 'kernels/pad1d.inc'
  end subroutine pad_r64

end module fkb_layer_pad1d
