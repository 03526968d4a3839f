!! Activation functions: their names as written in `.fkb` files, their parameters, and the
!! batch kernels that apply them in place (optionally fused with a bias add).
module fkb_activation
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_UNSUPPORTED, set_error
  use fkb_config, only: fkb_config_t, real_text
  implicit none
  private
  public :: fkb_activation_t, activation_from_name, activation_name, activation_takes_alpha
  public :: apply_activation, bias_activation, read_activation, write_activation
  public :: activation_backward, derivative_from_output
  public :: ACT_LINEAR, ACT_RELU, ACT_RELU_GENERAL, ACT_LEAKY_RELU, ACT_ELU, ACT_SOFTMAX

  enum, bind(c)
    enumerator :: ACT_LINEAR = 1, ACT_RELU, ACT_RELU6, ACT_LEAKY_RELU, ACT_ELU, ACT_SELU, &
                  ACT_GELU, ACT_GELU_TANH, ACT_SILU, ACT_MISH, ACT_SOFTPLUS, ACT_SOFTSIGN, &
                  ACT_TANH, ACT_SIGMOID, ACT_HARD_SIGMOID, ACT_HARD_SILU, ACT_EXPONENTIAL, &
                  ACT_SOFTMAX, ACT_LOG_SOFTMAX, ACT_RELU_GENERAL
  end enum

  !> File names of the activations, indexed by id (ACT_RELU_GENERAL is the ReLU layer's).
  character(len=*), parameter :: NAMES(20) = [character(len=12) :: &
    'linear', 'relu', 'relu6', 'leaky_relu', 'elu', 'selu', 'gelu', 'gelu_tanh', 'silu', &
    'mish', 'softplus', 'softsign', 'tanh', 'sigmoid', 'hard_sigmoid', 'hard_silu', &
    'exponential', 'softmax', 'log_softmax', 'relu_general']

  real(real64), parameter :: SELU_SCALE = 1.0507009873554804934193349852946_real64
  real(real64), parameter :: SELU_SCALE_ALPHA = 1.7580993408473768599402175208123_real64
  real(real64), parameter :: SQRT_HALF = 0.7071067811865476_real64
  real(real64), parameter :: SQRT_2_OVER_PI = 0.7978845608028654_real64
  real(real64), parameter :: TWO_OVER_SQRT_PI = 1.1283791670955126_real64

  type :: fkb_activation_t
    !! One activation with its parameters (kept in double, as Keras configs hold them).
    integer :: id = ACT_LINEAR
    real(real64) :: alpha = 0        !! leaky_relu slope, elu alpha, ReLU layer negative_slope
    real(real64) :: threshold = 0    !! ReLU layer only
    real(real64) :: max_value = 0    !! ReLU layer only, when has_max
    logical :: has_max = .false.
  end type fkb_activation_t

  interface apply_activation
    !! y(m, n) = act(y), one sample per column.
    module procedure apply_r32, apply_r64
  end interface apply_activation

  interface bias_activation
    !! y(:, j) = act(y(:, j) + b) for every column j; b absent means no bias.
    module procedure bias_act_r32, bias_act_r64
  end interface bias_activation

  interface activation_backward
    !! dy(:, j) := dy(:, j) * act'(z(:, j)) for every column (softmax: its Jacobian product);
    !! z is the pre-activation, y = act(z).
    module procedure act_backward_r32, act_backward_r64
  end interface activation_backward

  integer(int64), parameter :: BLOCK_ELEMENTS = 8192  !! bias+activation work unit (in cache)

contains

  subroutine activation_from_name(name, act, stat, msg)
    !! Looks up an activation by its file name; the default parameters follow Keras.
    character(len=*), intent(in) :: name
    type(fkb_activation_t), intent(out) :: act
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer :: i
    stat = FKB_OK
    do i = 1, ACT_LOG_SOFTMAX
      if (trim(NAMES(i)) == name) then
        act%id = i
        if (i == ACT_LEAKY_RELU) act%alpha = 0.2_real64
        if (i == ACT_ELU) act%alpha = 1.0_real64
        return
      end if
    end do
    call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unknown activation '" // name // "'")
  end subroutine activation_from_name

  subroutine read_activation(cfg, act, stat, msg)
    !! Reads `activation=NAME` and, for the activations that take one, `alpha=`.
    type(fkb_config_t), intent(inout) :: cfg
    type(fkb_activation_t), intent(out) :: act
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=:), allocatable :: name
    call cfg%get_text('activation', name, stat, msg)
    if (stat /= FKB_OK) return
    call activation_from_name(name, act, stat, msg)
    if (stat /= FKB_OK) then
      msg = cfg%where // ': ' // msg
      return
    end if
    if (activation_takes_alpha(act)) call cfg%get_real('alpha', act%alpha, stat, msg, &
                                                       default=act%alpha)
  end subroutine read_activation

  subroutine write_activation(act, cfg)
    type(fkb_activation_t), intent(in) :: act
    type(fkb_config_t), intent(inout) :: cfg
    call cfg%set('activation', activation_name(act))
    if (activation_takes_alpha(act)) call cfg%set('alpha', real_text(act%alpha))
  end subroutine write_activation

  pure function activation_name(act) result(name)
    type(fkb_activation_t), intent(in) :: act
    character(len=:), allocatable :: name
    name = trim(NAMES(act%id))
  end function activation_name

  pure logical function derivative_from_output(act)
    !! Whether act'(z) is act'(y) elementwise, y = act(z), so that activation_backward gives
    !! the same bits when passed y for z: the ReLU family, whose derivative reads only z > 0,
    !! with a slope >= 0 (y > 0 exactly where z > 0, NaN and -0 included; a product a*z that
    !! underflows stays <= 0). Not the ReLU layer with a slope (its derivative at z = 0 is 0,
    !! at z < 0 it is the slope, and y = 0 is both), a threshold or a maximum.
    type(fkb_activation_t), intent(in) :: act
    select case (act%id)
    case (ACT_RELU)
      derivative_from_output = .true.
    case (ACT_LEAKY_RELU)
      derivative_from_output = act%alpha >= 0
    case (ACT_RELU_GENERAL)
      derivative_from_output = act%alpha == 0 .and. act%threshold == 0 .and. .not. act%has_max
    case default
      derivative_from_output = .false.
    end select
  end function derivative_from_output

  pure logical function activation_takes_alpha(act)
    type(fkb_activation_t), intent(in) :: act
    activation_takes_alpha = act%id == ACT_LEAKY_RELU .or. act%id == ACT_ELU
  end function activation_takes_alpha

  ! ---- float32 ----

  subroutine apply_r32(act, m, n, y)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(real32), intent(inout) :: y(m, n)
    if (act%id == ACT_SOFTMAX .or. act%id == ACT_LOG_SOFTMAX) then
      call softmax_r32(act%id == ACT_LOG_SOFTMAX, m, n, y)
    else
      call elementwise_r32(act, m * n, y)
    end if
  end subroutine apply_r32

  subroutine bias_act_r32(act, m, n, y, b)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(real32), intent(inout) :: y(m, n)
    real(real32), intent(in), optional :: b(m)
    integer(int64) :: j0, j1, nb
    ! Walk the batch in blocks that stay in cache between the bias add and the activation.
    nb = max(1_int64, BLOCK_ELEMENTS / max(m, 1_int64))
    do j0 = 1, n, nb
      j1 = min(n, j0 + nb - 1)
      if (present(b)) call add_bias_r32(m, j1 - j0 + 1, y(:, j0:j1), b)
      call apply_r32(act, m, j1 - j0 + 1, y(:, j0:j1))
    end do
  end subroutine bias_act_r32

  subroutine add_bias_r32(m, n, y, b)
    integer(int64), intent(in) :: m, n
    real(real32), intent(inout) :: y(m, n)
    real(real32), intent(in) :: b(m)
    integer(int64) :: j
    do j = 1, n
      y(:, j) = y(:, j) + b
    end do
  end subroutine add_bias_r32

  subroutine elementwise_r32(act, cnt, v)
    integer, parameter :: wp = real32
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: cnt
    real(wp), intent(inout) :: v(cnt)
    integer(int64) :: i
    real(wp) :: a, t, mx, x
    include 'kernels/activation_elementwise.inc'
  contains
    include 'kernels/activation_helpers.inc'
  end subroutine elementwise_r32

  subroutine softmax_r32(logarithm, m, n, y)
    integer, parameter :: wp = real32
    logical, intent(in) :: logarithm
    integer(int64), intent(in) :: m, n
    real(wp), intent(inout) :: y(m, n)
    integer(int64) :: i, i0, i1, j
    real(wp) :: s, mx, buf(256)
    include 'kernels/softmax.inc'
  contains
    include 'kernels/vmath.inc'
  end subroutine softmax_r32

  ! ---- float64: the same bodies with wp = real64 ----

  subroutine apply_r64(act, m, n, y)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(real64), intent(inout) :: y(m, n)
    if (act%id == ACT_SOFTMAX .or. act%id == ACT_LOG_SOFTMAX) then
      call softmax_r64(act%id == ACT_LOG_SOFTMAX, m, n, y)
    else
      call elementwise_r64(act, m * n, y)
    end if
  end subroutine apply_r64

  subroutine bias_act_r64(act, m, n, y, b)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(real64), intent(inout) :: y(m, n)
    real(real64), intent(in), optional :: b(m)
    integer(int64) :: j0, j1, nb
    nb = max(1_int64, BLOCK_ELEMENTS / max(m, 1_int64))
    do j0 = 1, n, nb
      j1 = min(n, j0 + nb - 1)
      if (present(b)) call add_bias_r64(m, j1 - j0 + 1, y(:, j0:j1), b)
      call apply_r64(act, m, j1 - j0 + 1, y(:, j0:j1))
    end do
  end subroutine bias_act_r64

  subroutine add_bias_r64(m, n, y, b)
    integer(int64), intent(in) :: m, n
    real(real64), intent(inout) :: y(m, n)
    real(real64), intent(in) :: b(m)
    integer(int64) :: j
    do j = 1, n
      y(:, j) = y(:, j) + b
    end do
  end subroutine add_bias_r64

  subroutine elementwise_r64(act, cnt, v)
    integer, parameter :: wp = real64
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: cnt
    real(wp), intent(inout) :: v(cnt)
    integer(int64) :: i
    real(wp) :: a, t, mx, x
    include 'kernels/activation_elementwise.inc'
  contains
    include 'kernels/activation_helpers.inc'
  end subroutine elementwise_r64

  subroutine softmax_r64(logarithm, m, n, y)
    integer, parameter :: wp = real64
    logical, intent(in) :: logarithm
    integer(int64), intent(in) :: m, n
    real(wp), intent(inout) :: y(m, n)
    integer(int64) :: i, i0, i1, j
    real(wp) :: s, mx, buf(256)
    include 'kernels/softmax.inc'
  contains
    include 'kernels/vmath.inc'
  end subroutine softmax_r64


  subroutine act_backward_r32(act, m, n, z, y, dy)
    integer, parameter :: wp = real32
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(wp), intent(in) :: z(m, n), y(m, n)
    real(wp), intent(inout) :: dy(m, n)
    integer(int64) :: j
    do j = 1, n
      call column(z(:, j), y(:, j), dy(:, j))
    end do
  contains
    subroutine column(z, y, dy)
      real(wp), intent(in) :: z(m), y(m)
      real(wp), intent(inout) :: dy(m)
      integer(int64) :: i
      real(wp) :: a, t, mx, g, c, s
      include 'kernels/activation_backward.inc'
    end subroutine column
    include 'kernels/activation_helpers.inc'
  end subroutine act_backward_r32

  subroutine act_backward_r64(act, m, n, z, y, dy)
    integer, parameter :: wp = real64
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n
    real(wp), intent(in) :: z(m, n), y(m, n)
    real(wp), intent(inout) :: dy(m, n)
    integer(int64) :: j
    do j = 1, n
      call column(z(:, j), y(:, j), dy(:, j))
    end do
  contains
    subroutine column(z, y, dy)
      real(wp), intent(in) :: z(m), y(m)
      real(wp), intent(inout) :: dy(m)
      integer(int64) :: i
      real(wp) :: a, t, mx, g, c, s
      include 'kernels/activation_backward.inc'
    end subroutine column
    include 'kernels/activation_helpers.inc'
  end subroutine act_backward_r64

end module fkb_activation
