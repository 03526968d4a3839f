!! STUB (being implemented): up_sampling1d, zero_padding1d, cropping1d.
module fkb_layer_pad1d
  use iso_fortran_env, only: real32, real64
  use fkb_errors, only: FKB_ERR_UNSUPPORTED, set_error
  use fkb_layer, only: fkb_layer_t
  use fkb_config, only: fkb_config_t
  implicit none
  private
  public :: fkb_pad1d_t

  type, extends(fkb_layer_t) :: fkb_pad1d_t
  contains
    procedure :: configure => stub_configure
    procedure :: options => stub_options
    procedure :: forward_r32 => stub_forward_r32
    procedure :: forward_r64 => stub_forward_r64
  end type fkb_pad1d_t

contains

  subroutine stub_configure(self, cfg, stat, msg)
    class(fkb_pad1d_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ': not implemented yet')
  end subroutine stub_configure

  subroutine stub_options(self, cfg)
    class(fkb_pad1d_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
  end subroutine stub_options

  subroutine stub_forward_r32(self, x, y)
    class(fkb_pad1d_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
  end subroutine stub_forward_r32

  subroutine stub_forward_r64(self, x, y)
    class(fkb_pad1d_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
  end subroutine stub_forward_r64

end module fkb_layer_pad1d
