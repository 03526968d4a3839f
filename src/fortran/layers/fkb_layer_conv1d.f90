!! Keras 3 Conv1D (channels_last): (T, C) -> (T', filters), as GEMMs.
!!
!! A batch arrives as x(C, T*batch) (sample b, step t in column t + T*(b-1)). For each group,
!! the receptive fields are gathered (im2col) into the scratch matrix
!! cols((C/groups)*kernel_size, T'*batch), row c + (C/groups)*(kk-1) holding input channel c
!! at kernel tap kk, zero where the tap falls into the padding; then one GEMM per group,
!! y_g(filters/groups, T'*batch) = w_g . cols, and bias + activation fused in one pass over y.
!!
!! Keras' kernel (kernel_size, C/groups, filters) in C order is, read column-major,
!! w(filters, C/groups, kernel_size): with one group exactly the (filters, C*kernel_size)
!! matrix the GEMM wants. With several groups, `prepare` copies each group's rows into a
!! contiguous (filters/groups, (C/groups)*kernel_size) block, and each group's product goes
!! through scratch into its rows of y. A pointwise convolution (kernel_size 1, stride 1, one
!! group) multiplies x directly and needs no scratch.
!!
!! Padding (TensorFlow's rules): valid: T' = floor((T - (k-1)*d - 1)/s) + 1; same:
!! T' = ceil(T/s), pad_total = max((T'-1)*s + (k-1)*d + 1 - T, 0), pad_total/2 on the left;
!! causal: (k-1)*d on the left, then valid.
module fkb_layer_conv1d
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_FORMAT, FKB_ERR_SHAPE, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, int_text
  use fkb_layer, only: fkb_layer_t
  use fkb_activation, only: fkb_activation_t, read_activation, write_activation, bias_activation
  use fkb_blas, only: gemm, gemv, BLAS_INT_MAX
  use fkb_affine, only: affine
  implicit none
  private
  public :: fkb_conv1d_t

  type, extends(fkb_layer_t) :: fkb_conv1d_t
    integer(int64) :: filters = 0, ksize = 1, stride = 1, dilation = 1, groups = 1
    character(len=:), allocatable :: padding       !! valid | same | causal
    type(fkb_activation_t) :: act
    logical :: use_bias = .true.
    integer(int64) :: steps = 0, channels = 0      !! T, C of the input
    integer(int64) :: out_steps = 0                !! T'
    integer(int64) :: pad_left = 0                 !! zero steps before the first input step
    logical :: direct = .false.                    !! pointwise: GEMM on x itself
    real(real32), allocatable :: wg32(:)           !! groups > 1: per-group weight blocks
    real(real64), allocatable :: wg64(:)
  contains
    procedure :: configure => conv_configure
    procedure :: options => conv_options
    procedure :: prepare => conv_prepare
    procedure :: forward_r32 => conv_forward_r32
    procedure :: forward_r64 => conv_forward_r64
    procedure :: forward_ws_r32 => conv_forward_ws_r32
    procedure :: splits_batch => conv_splits_batch
    procedure :: forward_ws_r64 => conv_forward_ws_r64
  end type fkb_conv1d_t

contains

  logical function conv_splits_batch(self)
    class(fkb_conv1d_t), intent(in) :: self
    conv_splits_batch = .true.
  end function conv_splits_batch

  subroutine conv_configure(self, cfg, stat, msg)
    class(fkb_conv1d_t), intent(inout) :: self
    type(fkb_config_t), intent(inout) :: cfg
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: eff, total, cg
    call cfg%get_int('filters', self%filters, stat, msg)
    if (stat == FKB_OK) call cfg%get_int('kernel_size', self%ksize, stat, msg)
    if (stat == FKB_OK) call cfg%get_int('strides', self%stride, stat, msg)
    if (stat == FKB_OK) call cfg%get_text('padding', self%padding, stat, msg)
    if (stat == FKB_OK) call cfg%get_int('dilation_rate', self%dilation, stat, msg)
    if (stat == FKB_OK) call cfg%get_int('groups', self%groups, stat, msg)
    if (stat == FKB_OK) call read_activation(cfg, self%act, stat, msg)
    if (stat == FKB_OK) call cfg%get_bool('use_bias', self%use_bias, stat, msg)
    if (stat /= FKB_OK) return
    if (.not. positive('filters', self%filters)) return
    if (.not. positive('kernel_size', self%ksize)) return
    if (.not. positive('strides', self%stride)) return
    if (.not. positive('dilation_rate', self%dilation)) return
    if (.not. positive('groups', self%groups)) return
    if (self%padding /= 'valid' .and. self%padding /= 'same' .and. self%padding /= 'causal') then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": padding must be valid, " &
                     // "same or causal, got '" // self%padding // "'")
      return
    end if
    if (size(self%in_shapes(1)%d) /= 2) then
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': needs (steps, channels) input, ' &
                     // 'got per-sample shape (' // shape_text(self%in_shapes(1)%d) // ')')
      return
    end if
    self%steps = self%in_shapes(1)%d(1)
    self%channels = self%in_shapes(1)%d(2)
    if (mod(self%channels, self%groups) /= 0 .or. mod(self%filters, self%groups) /= 0) then
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': groups=' // &
                     int_text(self%groups) // ' must divide both the ' // &
                     int_text(self%channels) // ' input channels and the ' // &
                     int_text(self%filters) // ' filters')
      return
    end if
    if (self%ksize > BLAS_INT_MAX .or. self%dilation > BLAS_INT_MAX / self%ksize) then
      call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': kernel_size*dilation_rate ' // &
                     'out of range')
      return
    end if
    eff = (self%ksize - 1) * self%dilation + 1
    select case (self%padding)
    case ('valid')
      self%pad_left = 0
      if (eff <= self%steps) self%out_steps = (self%steps - eff) / self%stride + 1
    case ('same')
      self%out_steps = (self%steps + self%stride - 1) / self%stride
      total = max((self%out_steps - 1) * self%stride + eff - self%steps, 0_int64)
      self%pad_left = total / 2
    case ('causal')
      self%pad_left = eff - 1
      self%out_steps = (self%steps - 1) / self%stride + 1
    end select
    if (self%padding == 'valid' .and. eff > self%steps) then
      call set_error(stat, msg, FKB_ERR_SHAPE, cfg%where // ': the kernel spans ' // &
                     int_text(eff) // ' steps (kernel_size ' // int_text(self%ksize) // &
                     ', dilation_rate ' // int_text(self%dilation) // '), wider than the ' // &
                     int_text(self%steps) // ' steps of its input (padding ' // &
                     self%padding // ')')
      return
    end if
    self%n_out = self%out_steps * self%filters
    self%out_shape = [self%out_steps, self%filters]
    cg = self%channels / self%groups
    self%direct = self%ksize == 1 .and. self%stride == 1 .and. self%groups == 1 .and. &
                  self%pad_left == 0
    if (self%direct) then
      self%scratch = 0
    else
      self%scratch = cg * self%ksize * self%out_steps
      if (self%groups > 1) self%scratch = self%scratch + (self%filters / self%groups) * &
                                          self%out_steps
    end if
    if (self%use_bias) then
      call self%declare_params([character(len=6) :: 'kernel', 'bias'], &
                               reshape([self%ksize, cg, self%filters, self%filters, &
                                        -1_int64, -1_int64], [3, 2]))
    else
      call self%declare_params(['kernel'], reshape([self%ksize, cg, self%filters], [3, 1]))
    end if

  contains

    logical function positive(key, v)
      character(len=*), intent(in) :: key
      integer(int64), intent(in) :: v
      positive = v >= 1 .and. v <= BLAS_INT_MAX
      if (.not. positive) call set_error(stat, msg, FKB_ERR_FORMAT, cfg%where // ': ' // key // &
                                         ' must be in 1..' // int_text(BLAS_INT_MAX) // &
                                         ', got ' // int_text(v))
    end function positive

  end subroutine conv_configure

  pure function shape_text(d) result(text)
    integer(int64), intent(in) :: d(:)
    character(len=:), allocatable :: text
    integer :: i
    text = ''
    do i = 1, size(d)
      if (i > 1) text = text // ', '
      text = text // int_text(d(i))
    end do
    if (size(d) == 1) text = text // ','
  end function shape_text

  subroutine conv_options(self, cfg)
    class(fkb_conv1d_t), intent(in) :: self
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('filters', int_text(self%filters))
    call cfg%set('kernel_size', int_text(self%ksize))
    call cfg%set('strides', int_text(self%stride))
    call cfg%set('padding', self%padding)
    call cfg%set('dilation_rate', int_text(self%dilation))
    call cfg%set('groups', int_text(self%groups))
    call write_activation(self%act, cfg)
    call cfg%set('use_bias', merge('1', '0', self%use_bias))
  end subroutine conv_options

  subroutine conv_prepare(self, stat, msg)
    !! With several groups: wg(:, :, g) = the (filters/groups, (C/groups)*kernel_size) weight
    !! block of group g, rows of w(filters, C/groups, kernel_size) of that group's filters.
    class(fkb_conv1d_t), intent(inout) :: self
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: fg, kg
    stat = FKB_OK
    if (self%groups == 1) return
    fg = self%filters / self%groups
    kg = (self%channels / self%groups) * self%ksize
    if (allocated(self%params(1)%r32)) then
      if (allocated(self%wg32)) deallocate(self%wg32)
      allocate(self%wg32(self%filters * kg))
      call split_groups_r32(self%params(1)%r32, self%wg32)
    end if
    if (allocated(self%params(1)%r64)) then
      if (allocated(self%wg64)) deallocate(self%wg64)
      allocate(self%wg64(self%filters * kg))
      call split_groups_r64(self%params(1)%r64, self%wg64)
    end if

  contains

    subroutine split_groups_r32(w, wg)
      real(real32), intent(in) :: w(self%filters, kg)
      real(real32), intent(out) :: wg(fg, kg, self%groups)
      integer(int64) :: g
      do g = 1, self%groups
        wg(:, :, g) = w((g - 1) * fg + 1:g * fg, :)
      end do
    end subroutine split_groups_r32

    subroutine split_groups_r64(w, wg)
      real(real64), intent(in) :: w(self%filters, kg)
      real(real64), intent(out) :: wg(fg, kg, self%groups)
      integer(int64) :: g
      do g = 1, self%groups
        wg(:, :, g) = w((g - 1) * fg + 1:g * fg, :)
      end do
    end subroutine split_groups_r64

  end subroutine conv_prepare

  ! ---- forward: the network calls forward_ws (scratch > 0) or forward (pointwise) ----

  subroutine conv_forward_r32(self, x, y)
    class(fkb_conv1d_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r32(x, y, ws)
  end subroutine conv_forward_r32

  subroutine conv_forward_r64(self, x, y)
    class(fkb_conv1d_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), allocatable :: ws(:)
    allocate(ws(self%scratch * size(x, 2, kind=int64)))
    call self%forward_ws_r64(x, y, ws)
  end subroutine conv_forward_r64

  subroutine conv_forward_ws_r32(self, x, y, ws, state)
    class(fkb_conv1d_t), intent(in) :: self
    real(real32), intent(in), contiguous :: x(:, :)
    real(real32), intent(inout), contiguous :: y(:, :)
    real(real32), intent(inout), contiguous :: ws(:)
    real(real32), intent(inout), contiguous, optional :: state(:)
    integer(int64) :: nb
    nb = size(x, 2, kind=int64)   ! x(T*C, batch) -> (C, T*batch), y(T'*filters, batch) alike
    if (self%groups > 1) then
      call conv_r32(self, self%channels, self%steps * nb, self%filters, self%out_steps * nb, &
                     x, y, ws, self%wg32)
    else
      call conv_r32(self, self%channels, self%steps * nb, self%filters, self%out_steps * nb, &
                     x, y, ws, self%params(1)%r32)
    end if
  end subroutine conv_forward_ws_r32

  subroutine conv_forward_ws_r64(self, x, y, ws, state)
    class(fkb_conv1d_t), intent(in) :: self
    real(real64), intent(in), contiguous :: x(:, :)
    real(real64), intent(inout), contiguous :: y(:, :)
    real(real64), intent(inout), contiguous :: ws(:)
    real(real64), intent(inout), contiguous, optional :: state(:)
    integer(int64) :: nb
    nb = size(x, 2, kind=int64)   ! x(T*C, batch) -> (C, T*batch), y(T'*filters, batch) alike
    if (self%groups > 1) then
      call conv_r64(self, self%channels, self%steps * nb, self%filters, self%out_steps * nb, &
                     x, y, ws, self%wg64)
    else
      call conv_r64(self, self%channels, self%steps * nb, self%filters, self%out_steps * nb, &
                     x, y, ws, self%params(1)%r64)
    end if
  end subroutine conv_forward_ws_r64

  subroutine conv_r32(self, m, n, mo, no, x, y, ws, w)
    integer, parameter :: wp = real32
    class(fkb_conv1d_t), intent(in) :: self
    integer(int64), intent(in) :: m, n, mo, no
    real(wp), intent(in) :: x(m, n)
    real(wp), intent(inout) :: y(mo, no)
    real(wp), intent(inout), contiguous, target :: ws(:)
    real(wp), intent(in), contiguous :: w(:)
    if (self%use_bias) then
      call body(self%params(2)%r32)
    else
      call body()
    end if
  contains
    subroutine body(b)
      real(wp), intent(in), optional, contiguous :: b(:)
      include 'kernels/conv1d.inc'
    end subroutine body
  end subroutine conv_r32

  subroutine conv_r64(self, m, n, mo, no, x, y, ws, w)
    integer, parameter :: wp = real64
    class(fkb_conv1d_t), intent(in) :: self
    integer(int64), intent(in) :: m, n, mo, no
    real(wp), intent(in) :: x(m, n)
    real(wp), intent(inout) :: y(mo, no)
    real(wp), intent(inout), contiguous, target :: ws(:)
    real(wp), intent(in), contiguous :: w(:)
    if (self%use_bias) then
      call body(self%params(2)%r64)
    else
      call body()
    end if
  contains
    subroutine body(b)
      real(wp), intent(in), optional, contiguous :: b(:)
      include 'kernels/conv1d.inc'
    end subroutine body
  end subroutine conv_r64

end module fkb_layer_conv1d
