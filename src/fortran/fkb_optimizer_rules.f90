!! The optimizers' update rules, element by element over one variable, in Keras' order of
!! operations (double precision; fkb_optimizer supplies the step's scalars).
!!
!! A module of their own so that they are compiled apart from optimizer_step: inlined there,
!! the slots' arrays may alias as far as gfortran can tell and the loops stayed scalar (a fifth
!! of a training step); as separate procedures their dummies cannot alias, and they vectorise.
module fkb_optimizer_rules
  use iso_fortran_env, only: real32, real64, int64
  implicit none
  private
  public :: sgd_rule, adam_rule, adam_rule_r32, rmsprop_rule, adagrad_rule, nadam_rule

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

  pure subroutine adam_rule_r32(n, w, g, m, v, vhat, decay, one_b1, one_b2, alpha, eps, amsgrad)
    !! adam_rule on a float32 network's weights and gradients, each widened to double in
    !! registers and the weight rounded back once: the same arithmetic as widening copies
    !! followed by adam_rule (and by weight decay w - w * decay(1) * decay(2) first when
    !! decay(1) > 0), without their passes through memory (half of Adam's time in a step).
    integer(int64), intent(in) :: n
    real(real32), intent(inout) :: w(n)
    real(real32), intent(in) :: g(n)
    real(real64), intent(inout) :: m(n), v(n), vhat(n)
    real(real64), intent(in) :: decay(2), one_b1, one_b2, alpha, eps
    logical, intent(in) :: amsgrad
    real(real64) :: wi, gi
    integer(int64) :: i
    if (amsgrad .or. decay(1) > 0) then
      do i = 1, n
        wi = real(w(i), real64)
        if (decay(1) > 0) wi = wi - wi * decay(1) * decay(2)
        gi = real(g(i), real64)
        m(i) = m(i) + (gi - m(i)) * one_b1
        v(i) = v(i) + (gi * gi - v(i)) * one_b2
        if (amsgrad) then
          vhat(i) = max(vhat(i), v(i))
          w(i) = real(wi - (m(i) * alpha) / (sqrt(vhat(i)) + eps), real32)
        else
          w(i) = real(wi - (m(i) * alpha) / (sqrt(v(i)) + eps), real32)
        end if
      end do
    else
      do i = 1, n
        gi = real(g(i), real64)
        m(i) = m(i) + (gi - m(i)) * one_b1
        v(i) = v(i) + (gi * gi - v(i)) * one_b2
        w(i) = real(real(w(i), real64) - (m(i) * alpha) / (sqrt(v(i)) + eps), real32)
      end do
    end if
  end subroutine adam_rule_r32

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
