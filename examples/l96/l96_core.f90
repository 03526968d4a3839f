!! The Lorenz-96 equations (Lorenz 1996; Wilks 2005) and their fourth-order Runge-Kutta steps.
!!
!! Two-scale system, K slow variables X_k and J fast variables Y_{j,k} per slow one:
!!
!!     dX_k/dt     = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F + U_k
!!     U_k         = -(h c / b) sum_j Y_{j,k}                      (the subgrid tendency)
!!     dY_{j,k}/dt = -c b Y_{j+1,k} (Y_{j+2,k} - Y_{j-1,k}) - c Y_{j,k} + (h c / b) X_k
!!
!! X is periodic in k; the Y form one periodic ring of length J*K (Y_{J+1,k} = Y_{1,k+1}),
!! stored flat: y((k-1)*J + j) = Y_{j,k}. The one-scale model keeps only X, with U_k supplied
!! by a parameterization and held fixed during a step.
module l96_core
  use iso_fortran_env, only: real64
  implicit none
  private
  public :: dp, l96_config, subgrid_tendency, two_scale_tendency, two_scale_step
  public :: one_scale_tendency, one_scale_step, stencil

  integer, parameter :: dp = real64

  type :: l96_config
    !! The parameters of the case study (Wilks 2005 with F = 20; Arnold et al. 2013).
    integer :: nk = 8            !! K, slow variables
    integer :: nj = 32           !! J, fast variables per slow one
    real(dp) :: forcing = 20     !! F
    real(dp) :: h = 1            !! coupling strength
    real(dp) :: b = 10           !! spatial-scale ratio
    real(dp) :: c = 10           !! time-scale ratio
  end type l96_config

contains

  pure subroutine subgrid_tendency(cfg, y, u)
    !! U_k = -(h c / b) sum_j Y_{j,k}.
    type(l96_config), intent(in) :: cfg
    real(dp), intent(in) :: y(:)
    real(dp), intent(out) :: u(:)
    integer :: k
    do k = 1, cfg%nk
      u(k) = -(cfg%h * cfg%c / cfg%b) * sum(y((k - 1) * cfg%nj + 1:k * cfg%nj))
    end do
  end subroutine subgrid_tendency

  pure subroutine one_scale_tendency(cfg, x, u, dx)
    !! dX_k/dt of the slow variables for a given subgrid tendency u.
    type(l96_config), intent(in) :: cfg
    real(dp), intent(in) :: x(:), u(:)
    real(dp), intent(out) :: dx(:)
    integer :: k, n
    n = size(x)
    do k = 1, n
      dx(k) = -x(modulo(k - 2, n) + 1) * (x(modulo(k - 3, n) + 1) - x(modulo(k, n) + 1)) &
              - x(k) + cfg%forcing + u(k)
    end do
  end subroutine one_scale_tendency

  pure subroutine two_scale_tendency(cfg, x, y, dx, dy)
    !! Tendencies of the coupled system.
    type(l96_config), intent(in) :: cfg
    real(dp), intent(in) :: x(:), y(:)
    real(dp), intent(out) :: dx(:), dy(:)
    real(dp) :: u(size(x)), cb, coupling
    integer :: i, n
    call subgrid_tendency(cfg, y, u)
    call one_scale_tendency(cfg, x, u, dx)
    n = size(y)
    cb = cfg%c * cfg%b
    coupling = cfg%h * cfg%c / cfg%b
    do i = 1, n
      dy(i) = -cb * y(modulo(i, n) + 1) * (y(modulo(i + 1, n) + 1) - y(modulo(i - 2, n) + 1)) &
              - cfg%c * y(i) + coupling * x((i - 1) / cfg%nj + 1)
    end do
  end subroutine two_scale_tendency

  pure subroutine two_scale_step(cfg, dt, x, y)
    !! One classical RK4 step of the coupled system, in place.
    type(l96_config), intent(in) :: cfg
    real(dp), intent(in) :: dt
    real(dp), intent(inout) :: x(:), y(:)
    real(dp), dimension(size(x)) :: kx1, kx2, kx3, kx4
    real(dp), dimension(size(y)) :: ky1, ky2, ky3, ky4
    call two_scale_tendency(cfg, x, y, kx1, ky1)
    call two_scale_tendency(cfg, x + 0.5_dp * dt * kx1, y + 0.5_dp * dt * ky1, kx2, ky2)
    call two_scale_tendency(cfg, x + 0.5_dp * dt * kx2, y + 0.5_dp * dt * ky2, kx3, ky3)
    call two_scale_tendency(cfg, x + dt * kx3, y + dt * ky3, kx4, ky4)
    x = x + dt / 6 * (kx1 + 2 * kx2 + 2 * kx3 + kx4)
    y = y + dt / 6 * (ky1 + 2 * ky2 + 2 * ky3 + ky4)
  end subroutine two_scale_step

  pure subroutine one_scale_step(cfg, dt, x, u)
    !! One RK4 step of the one-scale model with the subgrid tendency u held fixed over the step
    !! (the parameterization is called once per step, like the physics of a climate model).
    type(l96_config), intent(in) :: cfg
    real(dp), intent(in) :: dt
    real(dp), intent(inout) :: x(:)
    real(dp), intent(in) :: u(:)
    real(dp), dimension(size(x)) :: k1, k2, k3, k4
    call one_scale_tendency(cfg, x, u, k1)
    call one_scale_tendency(cfg, x + 0.5_dp * dt * k1, u, k2)
    call one_scale_tendency(cfg, x + 0.5_dp * dt * k2, u, k3)
    call one_scale_tendency(cfg, x + dt * k3, u, k4)
    x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  end subroutine one_scale_step

  pure subroutine stencil(x, width, inputs)
    !! The network inputs of every site, one column per site:
    !! inputs(:, k) = [X_{k-r}, ..., X_k, ..., X_{k+r}] (periodic), width = 2r + 1.
    real(dp), intent(in) :: x(:)
    integer, intent(in) :: width
    real(dp), intent(out) :: inputs(:, :)
    integer :: k, i, r, n
    n = size(x)
    r = (width - 1) / 2
    do k = 1, n
      do i = 1, width
        inputs(i, k) = x(modulo(k - 1 + i - 1 - r, n) + 1)
      end do
    end do
  end subroutine stencil

end module l96_core
