!! The optimizers' update rules, element by element over one variable, in Keras' order of
!! operations (double precision, and Adam's also in float32 for float32 variables, as Keras
!! computes it; fkb_optimizer supplies the step's scalars).
!!
!! A module of their own so that they are compiled apart from optimizer_step: inlined there,
!! the slots' arrays may alias as far as gfortran can tell and the loops stayed scalar (a fifth
!! of a training step); as separate procedures their dummies cannot alias, and they vectorise.
module fkb_optimizer_rules
  use iso_fortran_env, only: real32, real64, int64
  implicit none
  private
  public :: sgd_rule, adam_rule, adam_rule_f32, rmsprop_rule, adagrad_rule, nadam_rule

contains


  pure subroutine sgd_rule(n, w, g, m, lr, mom, use_momentum, nesterov)
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: w(n), m(n)
    real(real64), intent(in) :: g(n), lr, mom
    logical, intent(in) :: use_momentum, nesterov
    integer(int64) :: i
    if (.not. use_momentum) then
      do i = 1, n
        w(i) = w(i) - g(i) * lr
      end do
    else if (nesterov) then
      do i = 1, n
        m(i) = m(i) * mom - g(i) * lr
        w(i) = w(i) + (m(i) * mom - g(i) * lr)
      end do
    else
      do i = 1, n
        m(i) = m(i) * mom - g(i) * lr
        w(i) = w(i) + m(i)
      end do
    end if
  end subroutine sgd_rule

  pure subroutine adam_rule(n, w, g, m, v, vhat, one_b1, one_b2, alpha, eps, amsgrad)
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: w(n), m(n), v(n), vhat(n)
    real(real64), intent(in) :: g(n), one_b1, one_b2, alpha, eps
    logical, intent(in) :: amsgrad
    integer(int64) :: i
    if (amsgrad) then
      do i = 1, n
        m(i) = m(i) + (g(i) - m(i)) * one_b1
        v(i) = v(i) + (g(i) * g(i) - v(i)) * one_b2
        vhat(i) = max(vhat(i), v(i))
        w(i) = w(i) - (m(i) * alpha) / (sqrt(vhat(i)) + eps)
      end do
    else
      do i = 1, n
        m(i) = m(i) + (g(i) - m(i)) * one_b1
        v(i) = v(i) + (g(i) * g(i) - v(i)) * one_b2
        w(i) = w(i) - (m(i) * alpha) / (sqrt(v(i)) + eps)
      end do
    end if
  end subroutine adam_rule

  pure subroutine adam_rule_f32(n, w, g, m, v, vhat, decay, one_b1, one_b2, alpha, eps, amsgrad)
    !! Adam on a float32 variable as Keras 3 computes it for one: every operation in float32,
    !! rounded in Keras' order (optimizers/adam.py update_step: m += (g - m)(1 - beta_1),
    !! v += (g^2 - v)(1 - beta_2), w -= (m alpha) / (sqrt(v) + eps); with weight decay
    !! w -= (w wd) lr first, backend/tensorflow/optimizer.py _apply_weight_decay), with no
    !! fused multiply-add (the library is built with -ffp-contract=off). decay = [wd, lr].
    integer(int64), intent(in) :: n
    real(real32), intent(inout) :: w(n), m(n), v(n), vhat(n)
    real(real32), intent(in) :: g(n), decay(2), one_b1, one_b2, alpha, eps
    logical, intent(in) :: amsgrad
    real(real32) :: wi
    integer(int64) :: i
    if (amsgrad .or. decay(1) > 0) then
      do i = 1, n
        wi = w(i)
        if (decay(1) > 0) wi = wi - wi * decay(1) * decay(2)
        m(i) = m(i) + (g(i) - m(i)) * one_b1
        v(i) = v(i) + (g(i) * g(i) - v(i)) * one_b2
        if (amsgrad) then
          vhat(i) = max(vhat(i), v(i))
          w(i) = wi - (m(i) * alpha) / (sqrt(vhat(i)) + eps)
        else
          w(i) = wi - (m(i) * alpha) / (sqrt(v(i)) + eps)
        end if
      end do
    else
      do i = 1, n
        m(i) = m(i) + (g(i) - m(i)) * one_b1
        v(i) = v(i) + (g(i) * g(i) - v(i)) * one_b2
        w(i) = w(i) - (m(i) * alpha) / (sqrt(v(i)) + eps)
      end do
    end if
  end subroutine adam_rule_f32

  pure subroutine rmsprop_rule(n, w, g, m, v, vhat, lr, rho, mom, eps, centered)
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: w(n), g(n), m(n), v(n), vhat(n)
    real(real64), intent(in) :: lr, rho, mom, eps
    logical, intent(in) :: centered
    integer(int64) :: i
    do i = 1, n
      v(i) = rho * v(i) + (1 - rho) * g(i) * g(i)
    end do
    if (centered) then
      do i = 1, n
        vhat(i) = rho * vhat(i) + (1 - rho) * g(i)
        g(i) = (lr * g(i)) / sqrt(v(i) - vhat(i)**2 + eps)
      end do
    else
      do i = 1, n
        g(i) = (lr * g(i)) / sqrt(v(i) + eps)
      end do
    end if
    if (mom > 0) then
      do i = 1, n
        m(i) = mom * m(i) + g(i)
        w(i) = w(i) - m(i)
      end do
    else
      do i = 1, n
        w(i) = w(i) - g(i)
      end do
    end if
  end subroutine rmsprop_rule

  pure subroutine adagrad_rule(n, w, g, v, lr, eps)
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: w(n), v(n)
    real(real64), intent(in) :: g(n), lr, eps
    integer(int64) :: i
    do i = 1, n
      v(i) = v(i) + g(i) * g(i)
      w(i) = w(i) - (lr * g(i)) / sqrt(v(i) + eps)
    end do
  end subroutine adagrad_rule

  pure subroutine nadam_rule(n, w, g, m, v, one_b1, one_b2, u_t1, one_up1, one_ut, one_up, &
                             lr, one_b2p, eps)
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: w(n), m(n), v(n)
    real(real64), intent(in) :: g(n), one_b1, one_b2, u_t1, one_up1, one_ut, one_up, lr, &
                                one_b2p, eps
    integer(int64) :: i
    do i = 1, n
      m(i) = m(i) + (g(i) - m(i)) * one_b1
      v(i) = v(i) + (g(i) * g(i) - v(i)) * one_b2
      w(i) = w(i) - ((u_t1 * m(i) / one_up1 + one_ut * g(i) / one_up) * lr) / &
                    (sqrt(v(i) / one_b2p) + eps)
    end do
  end subroutine nadam_rule

end module fkb_optimizer_rules
