!! Accuracy of FKB's own elementary functions (src/fortran/kernels/vmath.inc) against real128
!! (quad-precision libm), and of the C/Fortran libm for comparison: max error in ulp of the
!! result precision over a dense sweep and random points (uniform and log-uniform magnitude)
!! of each function's useful range. The numbers quoted in vmath.inc come from this program.
!!
!! Usage: vmath_accuracy [POINTS_PER_FUNCTION]   (default 4000000; half sweep, half random)
module vma32
  use iso_fortran_env, only: real32, real64, int64
  implicit none
  integer, parameter :: wp = real32
contains
  include 'kernels/vmath.inc'
end module vma32

module vma64
  use iso_fortran_env, only: real32, real64, int64
  implicit none
  integer, parameter :: wp = real64
contains
  include 'kernels/vmath.inc'
end module vma64

module vma_ref
  use iso_fortran_env, only: real32, real64, real128
  use iso_c_binding, only: c_double, c_float
  implicit none
  interface
    pure real(c_double) function c_expm1(x) bind(c, name='expm1')
      import :: c_double
      real(c_double), value, intent(in) :: x
    end function c_expm1
    pure real(c_double) function c_log1p(x) bind(c, name='log1p')
      import :: c_double
      real(c_double), value, intent(in) :: x
    end function c_log1p
    pure real(c_float) function c_expm1f(x) bind(c, name='expm1f')
      import :: c_float
      real(c_float), value, intent(in) :: x
    end function c_expm1f
    pure real(c_float) function c_log1pf(x) bind(c, name='log1pf')
      import :: c_float
      real(c_float), value, intent(in) :: x
    end function c_log1pf
  end interface
contains
  pure real(real128) function ref(f, x)
    integer, intent(in) :: f
    real(real64), intent(in) :: x
    real(real128) :: q
    q = real(x, real128)
    select case (f)
    case (1)
      ref = exp(q)
    case (2)
      if (abs(q) < 1e-8_real128) then
        ref = q + q * q / 2 + q**3 / 6 + q**4 / 24
      else
        ref = exp(q) - 1
      end if
    case (3)
      ref = tanh(q)
    case (4)
      ref = 1 / (1 + exp(-q))
    case default
      if (abs(q) < 1e-8_real128) then
        ref = q - q * q / 2 + q**3 / 3 - q**4 / 4
      else
        ref = log(1 + q)   ! 1 + q is exact in real128 for |x| >= 1e-8 (x a double)
      end if
    end select
  end function ref

  pure real(real64) function ulps(y, r, digits, emin)
    !! |y - r| in ulp of the precision with `digits` bits and minimum exponent emin
    real(real64), intent(in) :: y
    real(real128), intent(in) :: r
    integer, intent(in) :: digits, emin
    real(real128) :: u
    u = 2.0_real128 ** (max(exponent(r), emin) - digits)
    if (r == 0) u = 2.0_real128 ** (emin - digits)
    ulps = real(abs(real(y, real128) - r) / u, real64)
  end function ulps
end module vma_ref

program vmath_accuracy
  use iso_fortran_env, only: real32, real64, real128, int64
  use vma32, only: e32 => vm_exp, m32 => vm_expm1, t32 => vm_tanh, s32 => vm_sigmoid, &
                   l32 => vm_log1p
  use vma64, only: e64 => vm_exp, m64 => vm_expm1, t64 => vm_tanh, s64 => vm_sigmoid, &
                   l64 => vm_log1p
  use vma_ref
  implicit none
  character(len=*), parameter :: NAMES(5) = [character(len=7) :: 'exp', 'expm1', 'tanh', &
                                             'sigmoid', 'log1p']
  ! useful ranges (beyond them the result is inf, 0, -1, +-1 or NaN; checked separately)
  real(real64), parameter :: LO64(5) = [-745.2d0, -40d0, -20d0, -709d0, -1d0]
  real(real64), parameter :: HI64(5) = [709.78d0, 709.78d0, 20d0, 40d0, 1d300]
  real(real64), parameter :: LO32(5) = [-103.9d0, -18d0, -10d0, -104d0, -1d0]
  real(real64), parameter :: HI32(5) = [88.72d0, 88.72d0, 10d0, 18d0, 3d38]
  integer(int64) :: npts, i, nsweep
  integer :: f, p, where
  character(len=32) :: arg
  real(real64) :: x, y, u, worst, worst_libm, xworst, lo, hi
  real(real128) :: r
  real(real32) :: x32

  npts = 4000000
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) npts
  end if
  nsweep = npts / 2
  print '(a, i0, a)', 'max error in ulp over ', npts, ' points per function'
  print '(a)', 'function   precision   fkb (at x)                         libm'
  do p = 64, 32, -32
    do f = 1, 5
      worst = 0
      worst_libm = 0
      xworst = 0
      if (p == 64) then
        lo = LO64(f); hi = HI64(f)
      else
        lo = LO32(f); hi = HI32(f)
      end if
      do i = 1, npts
        if (i <= nsweep) then
          x = lo + (hi - lo) * (real(i - 1, real64) / real(nsweep - 1, real64))
          if (f == 5) x = log1p_grid(i, nsweep, hi)
        else
          call random_number(u)
          where = mod(int(i), 2)
          if (where == 0 .and. f /= 5) then
            x = lo + (hi - lo) * u
          else
            ! log-uniform magnitude in [1e-20, max(|lo|, hi)], either sign (within range)
            x = exp(log(1e-20_real64) + u * (log(max(abs(lo), hi)) - log(1e-20_real64)))
            call random_number(u)
            if (u < 0.5_real64) x = -x
            if (x < lo .or. x > hi) x = -x
            if (x < lo .or. x > hi) cycle
          end if
        end if
        if (p == 32) then
          x32 = real(x, real32)
          x = x32
          r = ref(f, x)
          if (abs(r) > huge(x32)) cycle
          select case (f)
          case (1); y = e32(x32)
          case (2); y = m32(x32)
          case (3); y = t32(x32)
          case (4); y = s32(x32)
          case default; y = l32(x32)
          end select
          u = ulps(y, r, 24, -125)
          if (u > worst) then
            worst = u; xworst = x
          end if
          select case (f)
          case (1); y = exp(x32)
          case (2); y = c_expm1f(x32)
          case (3); y = tanh(x32)
          case (4); y = 1 / (1 + exp(-x32))
          case default; y = c_log1pf(x32)
          end select
          worst_libm = max(worst_libm, ulps(y, r, 24, -125))
        else
          r = ref(f, x)
          if (abs(r) > huge(x)) cycle
          select case (f)
          case (1); y = e64(x)
          case (2); y = m64(x)
          case (3); y = t64(x)
          case (4); y = s64(x)
          case default; y = l64(x)
          end select
          u = ulps(y, r, 53, -1021)
          if (u > worst) then
            worst = u; xworst = x
          end if
          select case (f)
          case (1); y = exp(x)
          case (2); y = c_expm1(x)
          case (3); y = tanh(x)
          case (4); y = 1 / (1 + exp(-x))
          case default; y = c_log1p(x)
          end select
          worst_libm = max(worst_libm, ulps(y, r, 53, -1021))
        end if
      end do
      print '(a8, i8, f12.4, a, es24.16, a, f8.4)', NAMES(f), p, worst, ' (', xworst, ')', &
        worst_libm
    end do
  end do

contains

  real(real64) function log1p_grid(i, n, hi)
    !! half the sweep uniform on [-1, 1], half log-uniform on [1, hi]
    integer(int64), intent(in) :: i, n
    real(real64), intent(in) :: hi
    real(real64) :: t
    t = real(i - 1, real64) / real(n - 1, real64)
    if (t < 0.5_real64) then
      log1p_grid = -1 + 4 * t
    else
      log1p_grid = exp((2 * t - 1) * log(hi))
    end if
  end function log1p_grid

end program vmath_accuracy
