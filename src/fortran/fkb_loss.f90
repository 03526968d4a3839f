!! Loss functions with Keras 3's definitions, their gradients with respect to the
!! predictions, and Keras' "sum over batch size" reduction with optional sample weights:
!! loss = sum_b w_b l_b / batch, where l_b is the per-sample loss.
!!
!! Specs are text, as in `.fkb` headers: "mean_squared_error", "huber delta=1.0",
!! "categorical_crossentropy from_logits=1 label_smoothing=0.1". Computed in double precision.
module fkb_loss
  use iso_fortran_env, only: real32, real64, int64
  use fkb_errors, only: FKB_OK, FKB_ERR_UNSUPPORTED, FKB_ERR_ARGUMENT, FKB_ERR_SHAPE, set_error
  use fkb_config, only: fkb_config_t, real_text
  use fkb_text, only: string_t, split_fields
  implicit none
  private
  public :: fkb_loss_t, parse_loss, loss_and_gradient, LOSS_BCE, LOSS_CCE, LOSS_SPARSE_CCE

  enum, bind(c)
    enumerator :: LOSS_MSE = 1, LOSS_MAE, LOSS_HUBER, LOSS_LOG_COSH, LOSS_MAPE, LOSS_BCE, &
                  LOSS_CCE, LOSS_SPARSE_CCE
  end enum

  real(real64), parameter :: EPS = 1e-7_real64   !! keras.config.epsilon()

  type :: fkb_loss_t
    integer :: id = LOSS_MSE
    real(real64) :: delta = 1                 !! huber
    logical :: from_logits = .false.          !! crossentropies
    real(real64) :: label_smoothing = 0       !! binary and categorical crossentropy
    character(len=:), allocatable :: spec     !! as given, normalised
  end type fkb_loss_t

contains

  subroutine parse_loss(text, loss, stat, msg)
    !! Parses a loss spec; Keras' names and aliases ("mse", "mae", ...) are accepted.
    character(len=*), intent(in) :: text
    type(fkb_loss_t), intent(out) :: loss
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    type(string_t), allocatable :: f(:)
    type(fkb_config_t) :: cfg
    character(len=:), allocatable :: unused
    integer :: k, eq
    stat = FKB_OK
    f = split_fields(text, ' ')
    if (size(f) == 0) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'empty loss')
      return
    end if
    select case (f(1)%s)
    case ('mean_squared_error', 'mse'); loss%id = LOSS_MSE
    case ('mean_absolute_error', 'mae'); loss%id = LOSS_MAE
    case ('huber'); loss%id = LOSS_HUBER
    case ('log_cosh', 'logcosh'); loss%id = LOSS_LOG_COSH
    case ('mean_absolute_percentage_error', 'mape'); loss%id = LOSS_MAPE
    case ('binary_crossentropy'); loss%id = LOSS_BCE
    case ('categorical_crossentropy'); loss%id = LOSS_CCE
    case ('sparse_categorical_crossentropy'); loss%id = LOSS_SPARSE_CCE
    case default
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "unknown loss '" // f(1)%s // "'")
      return
    end select
    cfg%where = "loss '" // f(1)%s // "'"
    do k = 2, size(f)
      eq = index(f(k)%s, '=')
      if (eq < 2) then
        call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ": malformed option '" // &
                       f(k)%s // "'")
        return
      end if
      call cfg%set(f(k)%s(1:eq - 1), f(k)%s(eq + 1:))
    end do
    if (loss%id == LOSS_HUBER) call cfg%get_real('delta', loss%delta, stat, msg, default=1.0_real64)
    if (stat == FKB_OK .and. loss%id >= LOSS_BCE) &
      call cfg%get_bool('from_logits', loss%from_logits, stat, msg, default=.false.)
    if (stat == FKB_OK .and. (loss%id == LOSS_BCE .or. loss%id == LOSS_CCE)) &
      call cfg%get_real('label_smoothing', loss%label_smoothing, stat, msg, default=0.0_real64)
    if (stat /= FKB_OK) return
    unused = cfg%unused_key()
    if (len(unused) > 0) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, cfg%where // ": unknown option '" // &
                     unused // "'")
    else if (.not. (loss%delta > 0) .or. .not. (loss%label_smoothing >= 0 .and. &
             loss%label_smoothing <= 1)) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, cfg%where // ': option out of range')
    end if
    loss%spec = text
  end subroutine parse_loss

  subroutine loss_and_gradient(loss, y, t, w, logits, value, grad, stat, msg)
    !! value = reduced loss of predictions y(n_out, batch) against targets t (for sparse
    !! categorical: t(1, batch) class indices); grad = d value / d y (or d value / d logits
    !! when `logits` is true: the last activation's input, Keras' shortcut for sigmoid or
    !! softmax outputs). w: sample weights (size batch) or size 0.
    type(fkb_loss_t), intent(in) :: loss
    real(real64), intent(in) :: y(:, :), t(:, :), w(:)
    logical, intent(in) :: logits
    real(real64), intent(out) :: value
    real(real64), intent(out) :: grad(:, :)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    integer(int64) :: b, j, m, n, cls
    real(real64) :: l, e, wb, s, p, tt, lse, mx, q(size(y, 1))
    real(real64) :: tv(size(y, 1))
    stat = FKB_OK
    m = size(y, 1, int64)
    n = size(y, 2, int64)
    value = 0
    if (size(t, 2, int64) /= n .or. size(t, 1, int64) /= merge(1_int64, m, &
        loss%id == LOSS_SPARSE_CCE)) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'targets must be ' // trim(merge('1      ', &
                     'n_out  ', loss%id == LOSS_SPARSE_CCE)) // ' x batch')
      return
    end if
    if (size(w) /= 0 .and. size(w, kind=int64) /= n) then
      call set_error(stat, msg, FKB_ERR_SHAPE, 'sample weights: one per sample needed')
      return
    end if
    do b = 1, n
      wb = 1
      if (size(w) > 0) wb = w(b)
      ! Targets of this sample (one-hot for sparse, label smoothing applied).
      if (loss%id == LOSS_SPARSE_CCE) then
        cls = nint(t(1, b), int64)
        if (t(1, b) /= real(cls, real64) .or. cls < 0 .or. cls >= m) then
          call set_error(stat, msg, FKB_ERR_ARGUMENT, 'sparse targets must be class indices &
                         &in 0..n_outputs-1')
          return
        end if
        tv = 0
        tv(cls + 1) = 1
      else
        tv = t(:, b)
      end if
      if (loss%id == LOSS_BCE) tv = tv * (1 - loss%label_smoothing) + 0.5_real64 * loss%label_smoothing
      if (loss%id == LOSS_CCE) tv = tv * (1 - loss%label_smoothing) + loss%label_smoothing / m
      l = 0
      select case (loss%id)
      case (LOSS_MSE)
        do j = 1, m
          e = y(j, b) - tv(j)
          l = l + e * e
          grad(j, b) = 2 * e / m
        end do
        l = l / m
      case (LOSS_MAE)
        do j = 1, m
          e = y(j, b) - tv(j)
          l = l + abs(e)
          grad(j, b) = sign_or_zero(e) / m
        end do
        l = l / m
      case (LOSS_HUBER)
        do j = 1, m
          e = y(j, b) - tv(j)
          if (abs(e) <= loss%delta) then
            l = l + 0.5_real64 * e * e
            grad(j, b) = e / m
          else
            l = l + (loss%delta * abs(e) - 0.5_real64 * loss%delta**2)
            grad(j, b) = loss%delta * sign_or_zero(e) / m
          end if
        end do
        l = l / m
      case (LOSS_LOG_COSH)
        do j = 1, m
          e = y(j, b) - tv(j)
          l = l + (e + softplus(-2 * e) - real(log(2.0_real32), real64))   ! Keras: float32
          grad(j, b) = (1 - 2 / (1 + exp(2 * e))) / m
        end do
        l = l / m
      case (LOSS_MAPE)
        do j = 1, m
          e = tv(j) - y(j, b)
          s = max(abs(tv(j)), EPS)
          l = l + abs(e) / s
          grad(j, b) = -100 * sign_or_zero(e) / s / m
        end do
        l = 100 * l / m
      case (LOSS_BCE)
        do j = 1, m
          tt = tv(j)
          if (logits .or. loss%from_logits) then
            e = y(j, b)
            l = l + (max(e, 0.0_real64) - e * tt + log1p_exp(-abs(e)))
            grad(j, b) = (1 / (1 + exp(-e)) - tt) / m
          else
            p = y(j, b)
            if (p < EPS .or. p > 1 - EPS) then
              p = min(max(p, EPS), 1 - EPS)
              grad(j, b) = 0   ! the clip passes no gradient outside its range
            else
              grad(j, b) = (-tt / p + (1 - tt) / (1 - p)) / m
            end if
            l = l - (tt * log(p) + (1 - tt) * log(1 - p))
          end if
        end do
        l = l / m
      case (LOSS_CCE, LOSS_SPARSE_CCE)
        if (logits .or. loss%from_logits) then
          mx = maxval(y(:, b))
          lse = mx + log(sum(exp(y(:, b) - mx)))
          l = -sum(tv * (y(:, b) - lse))
          grad(:, b) = exp(y(:, b) - lse) * sum(tv) - tv
        else
          s = sum(y(:, b))
          q = y(:, b) / s
          do j = 1, m
            if (q(j) < EPS .or. q(j) > 1 - EPS) then
              l = l - tv(j) * log(min(max(q(j), EPS), 1 - EPS))
              q(j) = 0          ! d/dq of the clipped term
            else
              l = l - tv(j) * log(q(j))
              q(j) = -tv(j) / q(j)
            end if
          end do
          ! Through the normalisation q = y / sum(y).
          grad(:, b) = (q - sum(q * y(:, b) / s)) / s
        end if
      end select
      value = value + wb * l
      grad(:, b) = grad(:, b) * wb / n
    end do
    value = value / n
    if (.not. (abs(value) <= huge(value))) then
      call set_error(stat, msg, FKB_ERR_ARGUMENT, 'the loss is ' // real_text(value) // &
                     ' (NaN or infinite): the step was not applied')
    end if
  end subroutine loss_and_gradient

  pure real(real64) function sign_or_zero(x)
    real(real64), intent(in) :: x
    sign_or_zero = merge(1.0_real64, merge(-1.0_real64, 0.0_real64, x < 0), x > 0)
  end function sign_or_zero

  pure real(real64) function softplus(x)
    real(real64), intent(in) :: x
    softplus = max(x, 0.0_real64) + log1p_exp(-abs(x))
  end function softplus

  pure real(real64) function log1p_exp(x)
    !! log(1 + exp(x)) for x <= 0.
    real(real64), intent(in) :: x
    log1p_exp = log(1 + exp(x))
  end function log1p_exp

end module fkb_loss
