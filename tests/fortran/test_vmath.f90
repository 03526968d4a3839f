!! FKB's own exp/expm1/tanh/sigmoid/log1p (src/fortran/kernels/vmath.inc) inside the activation
!! kernels, which gfortran vectorises:
!!  1. position independence: every value gives the same bits at every position of arrays of
!!     lengths 1..67 (vector body, vectorised epilogue and scalar remainder agree), forward
!!     (apply_activation) and backward (activation_backward), float32 and float64, special
!!     values included (+-0, subnormals, +-inf, NaN, overflow and underflow thresholds; a NaN
!!     result must be NaN, its sign and payload are not specified);
!!  2. softmax / log_softmax: the vectorised exp and the in-order sum give the same bits as
!!     the same formula evaluated one element at a time;
!!  3. accuracy against real128 (quad libm): max error in ulp of the result precision.
program test_vmath
  use iso_fortran_env, only: real32, real64, real128, int32, int64
  use fkb_activation, only: fkb_activation_t, activation_from_name, apply_activation, &
                            activation_backward
  use fkb_testing, only: check, finish
  implicit none
  character(len=*), parameter :: ACTS(13) = [character(len=12) :: 'exponential', 'elu', &
    'selu', 'tanh', 'sigmoid', 'silu', 'softplus', 'mish', 'gelu_tanh', 'gelu', 'softsign', &
    'log_softmax', 'softmax']
  integer, parameter :: NMAX = 67
  real(real64), allocatable :: vals(:)
  integer :: a

  call make_values(vals)
  do a = 1, size(ACTS) - 2
    call positions32(trim(ACTS(a)))
    call positions64(trim(ACTS(a)))
  end do
  call softmax_order()
  call accuracy()
  call finish()

contains

  ! rank-1 arrays as one column (the generic interfaces take rank-2 arrays)
  subroutine app(act, n, v)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    class(*), intent(inout) :: v(n)
    select type (v)
    type is (real(real32))
      call app32(act, n, v)
    type is (real(real64))
      call app64(act, n, v)
    end select
  end subroutine app

  subroutine app32(act, n, v)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    real(real32), intent(inout) :: v(n, 1)
    call apply_activation(act, n, 1_int64, v)
  end subroutine app32

  subroutine app64(act, n, v)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    real(real64), intent(inout) :: v(n, 1)
    call apply_activation(act, n, 1_int64, v)
  end subroutine app64

  subroutine back(act, n, z, y, dy)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    class(*), intent(in) :: z(n), y(n)
    class(*), intent(inout) :: dy(n)
    select type (dy)
    type is (real(real32))
      select type (z)
      type is (real(real32))
        select type (y)
        type is (real(real32))
          call back32(act, n, z, y, dy)
        end select
      end select
    type is (real(real64))
      select type (z)
      type is (real(real64))
        select type (y)
        type is (real(real64))
          call back64(act, n, z, y, dy)
        end select
      end select
    end select
  end subroutine back

  subroutine back32(act, n, z, y, dy)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    real(real32), intent(in) :: z(n, 1), y(n, 1)
    real(real32), intent(inout) :: dy(n, 1)
    call activation_backward(act, n, 1_int64, z, y, dy)
  end subroutine back32

  subroutine back64(act, n, z, y, dy)
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: n
    real(real64), intent(in) :: z(n, 1), y(n, 1)
    real(real64), intent(inout) :: dy(n, 1)
    call activation_backward(act, n, 1_int64, z, y, dy)
  end subroutine back64

  subroutine make_values(v)
    real(real64), allocatable, intent(out) :: v(:)
    real(real64), parameter :: SPECIAL(*) = [0.0_real64, 1e-300_real64, 1e-310_real64, &
      1e-40_real64, 1e-20_real64, 1e-8_real64, 0.1_real64, 0.3465_real64, 0.5_real64, &
      0.5493_real64, 1.0_real64, 2.0_real64, 5.0_real64, 13.9_real64, 17.0_real64, &
      20.0_real64, 36.0_real64, 40.0_real64, 87.3_real64, 88.72_real64, 89.0_real64, &
      103.9_real64, 200.0_real64, 708.4_real64, 709.78_real64, 710.0_real64, 745.1_real64, &
      746.0_real64, 800.0_real64, 1e300_real64, huge(1.0_real64)]
    real(real64) :: inf, nan, u
    integer :: i, n
    inf = ieee_bits(int(z'7FF0000000000000', int64))
    nan = ieee_bits(int(z'7FF8000000000000', int64))
    n = 2 * size(SPECIAL) + 3 + 60
    allocate(v(n))
    v(1:size(SPECIAL)) = SPECIAL
    v(size(SPECIAL) + 1:2 * size(SPECIAL)) = -SPECIAL
    v(2 * size(SPECIAL) + 1:2 * size(SPECIAL) + 3) = [inf, -inf, nan]
    do i = 2 * size(SPECIAL) + 4, n
      call random_number(u)
      v(i) = (u - 0.5_real64) * 30
    end do
  end subroutine make_values

  ! Different bits; NaN results count as equal whatever their sign and payload (not specified,
  ! as for libm).
  logical function differ32(a, b)
    real(real32), intent(in) :: a, b
    differ32 = transfer(a, 0_int32) /= transfer(b, 0_int32) .and. .not. (a /= a .and. b /= b)
  end function differ32

  logical function differ64(a, b)
    real(real64), intent(in) :: a, b
    differ64 = transfer(a, 0_int64) /= transfer(b, 0_int64) .and. .not. (a /= a .and. b /= b)
  end function differ64

  real(real64) function ieee_bits(b)
    integer(int64), intent(in) :: b
    ieee_bits = transfer(b, 1.0_real64)
  end function ieee_bits

  subroutine positions32(name)
    character(len=*), intent(in) :: name
    type(fkb_activation_t) :: act
    real(real32), allocatable :: v(:), ref(:), dref(:), x(:), y(:), z(:), dy(:)
    integer :: stat, n, o, i, k, nv, bad, badb
    character(len=:), allocatable :: msg
    call activation_from_name(name, act, stat, msg)
    v = real(vals, real32)
    nv = size(v)
    allocate(ref(nv), dref(nv), x(NMAX), y(NMAX), z(NMAX), dy(NMAX))
    ! references: one element at a time
    do k = 1, nv
      x(1) = v(k)
      call app(act, 1_int64, x(1:1))
      ref(k) = x(1)
      dy(1) = 1.5
      call back(act, 1_int64, v(k:k), ref(k:k), dy(1:1))
      dref(k) = dy(1)
    end do
    bad = 0
    badb = 0
    do n = 1, NMAX
      do o = 0, nv - 1
        do i = 1, n
          x(i) = v(mod(o + i - 1, nv) + 1)
        end do
        z(1:n) = x(1:n)
        call app(act, int(n, int64), x(1:n))
        y(1:n) = x(1:n)
        dy(1:n) = 1.5
        call back(act, int(n, int64), z(1:n), y(1:n), dy(1:n))
        do i = 1, n
          k = mod(o + i - 1, nv) + 1
          if (differ32(y(i), ref(k))) bad = bad + 1
          if (differ32(dy(i), dref(k))) badb = badb + 1
        end do
      end do
    end do
    call check(bad == 0, name // ' float32: same bits at every position, lengths 1..67')
    call check(badb == 0, name // ' float32 gradient: same bits at every position')
  end subroutine positions32

  subroutine positions64(name)
    character(len=*), intent(in) :: name
    type(fkb_activation_t) :: act
    real(real64), allocatable :: v(:), ref(:), dref(:), x(:), y(:), z(:), dy(:)
    integer :: stat, n, o, i, k, nv, bad, badb
    character(len=:), allocatable :: msg
    call activation_from_name(name, act, stat, msg)
    v = vals
    nv = size(v)
    allocate(ref(nv), dref(nv), x(NMAX), y(NMAX), z(NMAX), dy(NMAX))
    do k = 1, nv
      x(1) = v(k)
      call app(act, 1_int64, x(1:1))
      ref(k) = x(1)
      dy(1) = 1.5
      call back(act, 1_int64, v(k:k), ref(k:k), dy(1:1))
      dref(k) = dy(1)
    end do
    bad = 0
    badb = 0
    do n = 1, NMAX
      do o = 0, nv - 1
        do i = 1, n
          x(i) = v(mod(o + i - 1, nv) + 1)
        end do
        z(1:n) = x(1:n)
        call app(act, int(n, int64), x(1:n))
        y(1:n) = x(1:n)
        dy(1:n) = 1.5
        call back(act, int(n, int64), z(1:n), y(1:n), dy(1:n))
        do i = 1, n
          k = mod(o + i - 1, nv) + 1
          if (differ64(y(i), ref(k))) bad = bad + 1
          if (differ64(dy(i), dref(k))) badb = badb + 1
        end do
      end do
    end do
    call check(bad == 0, name // ' float64: same bits at every position, lengths 1..67')
    call check(badb == 0, name // ' float64 gradient: same bits at every position')
  end subroutine positions64

  subroutine softmax_order()
    ! softmax and log_softmax of columns of 1..67 features against the same formula computed
    ! one element at a time (exp through the `exponential` activation on length-1 arrays).
    type(fkb_activation_t) :: sm, lsm, ex
    real(real64) :: c(NMAX), y(NMAX), e(NMAX), s, mx, u
    real(real32) :: c4(NMAX), y4(NMAX), e4(NMAX), s4, mx4
    integer :: stat, m, i, bad, bad4, badl, badl4
    character(len=:), allocatable :: msg
    call activation_from_name('softmax', sm, stat, msg)
    call activation_from_name('log_softmax', lsm, stat, msg)
    call activation_from_name('exponential', ex, stat, msg)
    bad = 0; bad4 = 0; badl = 0; badl4 = 0
    do m = 1, NMAX
      do i = 1, m
        call random_number(u)
        c(i) = (u - 0.5_real64) * 20
      end do
      c4(1:m) = real(c(1:m), real32)
      ! float64
      mx = maxval(c(1:m))
      s = 0
      do i = 1, m
        e(i) = c(i) - mx
        call app(ex, 1_int64, e(i:i))
        s = s + e(i)
      end do
      y(1:m) = c(1:m)
      call app(sm, int(m, int64), y(1:m))
      if (any(y(1:m) /= e(1:m) / s)) bad = bad + 1
      y(1:m) = c(1:m)
      call app(lsm, int(m, int64), y(1:m))
      if (any(y(1:m) /= (c(1:m) - mx) - log(s))) badl = badl + 1
      ! float32
      mx4 = maxval(c4(1:m))
      s4 = 0
      do i = 1, m
        e4(i) = c4(i) - mx4
        call app(ex, 1_int64, e4(i:i))
        s4 = s4 + e4(i)
      end do
      y4(1:m) = c4(1:m)
      call app(sm, int(m, int64), y4(1:m))
      if (any(y4(1:m) /= e4(1:m) / s4)) bad4 = bad4 + 1
      y4(1:m) = c4(1:m)
      call app(lsm, int(m, int64), y4(1:m))
      if (any(y4(1:m) /= (c4(1:m) - mx4) - log(s4))) badl4 = badl4 + 1
    end do
    call check(bad == 0, 'softmax float64: vectorised exp, in-order sum')
    call check(badl == 0, 'log_softmax float64: vectorised exp, in-order sum')
    call check(bad4 == 0, 'softmax float32: vectorised exp, in-order sum')
    call check(badl4 == 0, 'log_softmax float32: vectorised exp, in-order sum')
  end subroutine softmax_order

  subroutine accuracy()
    ! max error in ulp against real128 on random points (uniform and log-uniform magnitude);
    ! the full measurement is benchmarks/fortran/vmath_accuracy.f90.
    integer, parameter :: NPTS = 200000
    character(len=*), parameter :: NAMES(5) = [character(len=12) :: 'exponential', 'elu', &
                                               'tanh', 'sigmoid', 'softplus']
    real(real64), parameter :: LO(5) = [-745.0_real64, -40.0_real64, -20.0_real64, &
                                        -700.0_real64, -30.0_real64]
    real(real64), parameter :: HI(5) = [709.0_real64, 700.0_real64, 20.0_real64, &
                                        40.0_real64, 30.0_real64]
    type(fkb_activation_t) :: act
    real(real64), allocatable :: x(:), y(:)
    real(real32), allocatable :: x4(:), y4(:)
    real(real64) :: u, w64, w32
    integer :: f, i, stat
    character(len=:), allocatable :: msg
    character(len=80) :: line
    allocate(x(NPTS), y(NPTS), x4(NPTS), y4(NPTS))
    do f = 1, size(NAMES)
      call activation_from_name(trim(NAMES(f)), act, stat, msg)
      do i = 1, NPTS
        call random_number(u)
        if (mod(i, 2) == 0) then
          x(i) = LO(f) + (HI(f) - LO(f)) * u
        else
          x(i) = exp(log(1e-12_real64) + u * (log(HI(f)) - log(1e-12_real64)))
          if (mod(i, 4) == 1) x(i) = max(-x(i), LO(f))
        end if
      end do
      y = x
      call app(act, int(NPTS, int64), y)
      x4 = real(x, real32)
      y4 = x4
      call app(act, int(NPTS, int64), y4)
      w64 = 0
      w32 = 0
      do i = 1, NPTS
        w64 = max(w64, ulps(y(i), ref(f, x(i), 53), 53, -1021))
        w32 = max(w32, ulps(real(y4(i), real64), ref(f, real(x4(i), real64), 24), 24, -125))
      end do
      write (line, '(a, a, f7.3, a, f7.3, a)') trim(NAMES(f)), ': max error ', w64, &
        ' ulp (float64), ', w32, ' ulp (float32)'
      print '(a)', trim(line)
      call check(w64 <= 2, trim(NAMES(f)) // ' float64 within 2 ulp of real128')
      ! float32 exp/tanh/sigmoid are computed in real32 (kernels/vmath.inc: <= 1.16 ulp)
      call check(w32 <= 2, trim(NAMES(f)) // ' float32 within 2 ulp of real128')
    end do
  end subroutine accuracy

  real(real128) function ref(f, x, digits)
    integer, intent(in) :: f, digits
    real(real64), intent(in) :: x
    real(real128) :: q, thr
    q = real(x, real128)
    select case (f)
    case (1)
      ref = exp(q)
    case (2)   ! elu, alpha = 1
      if (q > 0) then
        ref = q
      else if (q > -1e-8_real128) then
        ref = q + q * q / 2 + q**3 / 6
      else
        ref = exp(q) - 1
      end if
    case (3)
      ref = tanh(q)
    case (4)
      ref = 1 / (1 + exp(-q))
    case default   ! softplus as TensorFlow: x, exp(x) or log1p(exp(x)) by thresholds
      thr = log(2.0_real128**(1 - digits)) + 2
      if (q > -thr) then
        ref = q
      else if (q < thr) then
        ref = exp(q)
      else
        ref = log(1 + exp(q))
      end if
    end select
  end function ref

  real(real64) function ulps(y, r, digits, emin)
    real(real64), intent(in) :: y
    real(real128), intent(in) :: r
    integer, intent(in) :: digits, emin
    real(real128) :: u
    if (abs(r) > huge(y) .or. (digits == 24 .and. abs(r) > huge(1.0_real32))) then
      ulps = 0   ! overflow: the result is +-inf, checked by the position test above
      if (abs(y) <= huge(y) .and. digits == 53) ulps = huge(1.0_real64)
      return
    end if
    u = 2.0_real128 ** (max(exponent(r), emin) - digits)
    if (r == 0) u = 2.0_real128 ** (emin - digits)
    ulps = real(abs(real(y, real128) - r) / u, real64)
  end function ulps

end program test_vmath
