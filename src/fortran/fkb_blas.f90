!! The compute backend's matrix products, behind one generic interface.
!!
!! Everything numerical above this module calls `gemm`/`gemv` for either precision; a GPU or
!! other backend replaces this module without touching the layers. BLAS is called with the
!! reference (LP64, 32-bit integer) interface that every BLAS provides.
!!
!! Deterministic mode (environment FKB_DETERMINISTIC=1 when the first network is loaded, or
!! `set_deterministic`): products use a fixed-order kernel in which every output element is
!! the sum over k in order 1..k, whatever the batch size, the split of a batch into calls or
!! the number of threads. BLAS may choose its blocking and kernels by matrix shape, so with it
!! one column's result can depend on how many columns shared the call.
!!
!! On x86-64 CPUs with AVX-512 or AVX2+FMA the forward products (gemm, gemv, fused_gemm) use
!! FKB's own kernels (src/cpu/fkb_gemm.c) instead: faster on a layer's shapes, bias and ReLU/LeakyReLU
!! applied in registers, and every element one in-order chain of fused multiply-adds, so a
!! sample's result is the same whatever the batch size or thread count. They use the OpenMP
!! threads; FKB_GEMM=blas in the environment keeps everything on BLAS (FKB_GEMM=avx2: the AVX2
!! kernels even where AVX-512 is available). A training step's products (gemm, gemm_nt,
!! gemm_tn) all use them too, or all BLAS: mixing OpenBLAS' thread pool with OpenMP's in one
!! step makes each spin-wait on the cores the other needs (2 threads: training 2.7x slower).
!! Deterministic mode keeps gemm_nt/gemm_tn on BLAS (training is not covered by its promise).
module fkb_blas
  use iso_fortran_env, only: real32, real64, int32, int64
  use iso_c_binding, only: c_int, c_int64_t, c_float, c_double
  use omp_lib, only: omp_in_parallel
  implicit none
  private
  public :: gemm, gemv, gemm_nt, gemm_tn, BLAS_INT_MAX, set_deterministic, is_deterministic, init_backend
  public :: fused_gemm, fast_gemm_available
  public :: FUSED_NONE, FUSED_RELU, FUSED_LEAKY

  !> Activations fused_gemm applies in registers (the C kernels' FKB_CPU_ACT_* values).
  integer, parameter :: FUSED_NONE = 0, FUSED_RELU = 1, FUSED_LEAKY = 2

  integer(int64), parameter :: BLAS_INT_MAX = huge(1_int32)  !! largest dimension BLAS takes
  integer(int64), parameter :: COLUMN_BLOCK = 8                !! fixed-order kernel's block

  logical, save :: deterministic = .false.
  logical, save :: initialised = .false.

  interface
    subroutine sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
      import :: real32, int32
      character, intent(in) :: transa, transb
      integer(int32), intent(in) :: m, n, k, lda, ldb, ldc
      real(real32), intent(in) :: alpha, beta, a(lda, *), b(ldb, *)
      real(real32), intent(inout) :: c(ldc, *)
    end subroutine sgemm
    subroutine dgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
      import :: real64, int32
      character, intent(in) :: transa, transb
      integer(int32), intent(in) :: m, n, k, lda, ldb, ldc
      real(real64), intent(in) :: alpha, beta, a(lda, *), b(ldb, *)
      real(real64), intent(inout) :: c(ldc, *)
    end subroutine dgemm
    subroutine sgemv(trans, m, n, alpha, a, lda, x, incx, beta, y, incy)
      import :: real32, int32
      character, intent(in) :: trans
      integer(int32), intent(in) :: m, n, lda, incx, incy
      real(real32), intent(in) :: alpha, beta, a(lda, *), x(*)
      real(real32), intent(inout) :: y(*)
    end subroutine sgemv
    subroutine dgemv(trans, m, n, alpha, a, lda, x, incx, beta, y, incy)
      import :: real64, int32
      character, intent(in) :: trans
      integer(int32), intent(in) :: m, n, lda, incx, incy
      real(real64), intent(in) :: alpha, beta, a(lda, *), x(*)
      real(real64), intent(inout) :: y(*)
    end subroutine dgemv
  end interface

  interface
    integer(c_int) function fkb_cpu_gemm_available() bind(C, name='fkb_cpu_gemm_available')
      import :: c_int
    end function fkb_cpu_gemm_available
    integer(c_int) function fkb_cpu_sgemm(m, n, k, a, b, c, bias, act, alpha, threaded) &
        bind(C, name='fkb_cpu_sgemm')
      import :: c_int, c_int64_t, c_float, c_double
      integer(c_int64_t), value :: m, n, k
      real(c_float), intent(in) :: a(*), b(*)
      real(c_float), intent(inout) :: c(*)
      real(c_float), intent(in), optional :: bias(*)     ! absent: NULL
      integer(c_int), value :: act, threaded
      real(c_double), value :: alpha
    end function fkb_cpu_sgemm
    integer(c_int) function fkb_cpu_dgemm(m, n, k, a, b, c, bias, act, alpha, threaded) &
        bind(C, name='fkb_cpu_dgemm')
      import :: c_int, c_int64_t, c_double
      integer(c_int64_t), value :: m, n, k
      real(c_double), intent(in) :: a(*), b(*)
      real(c_double), intent(inout) :: c(*)
      real(c_double), intent(in), optional :: bias(*)    ! absent: NULL
      integer(c_int), value :: act, threaded
      real(c_double), value :: alpha
    end function fkb_cpu_dgemm
    integer(c_int) function fkb_cpu_sgemm_nt(m, n, k, a, b, c, threaded) &
        bind(C, name='fkb_cpu_sgemm_nt')
      import :: c_int, c_int64_t, c_float
      integer(c_int64_t), value :: m, n, k
      real(c_float), intent(in) :: a(*), b(*)
      real(c_float), intent(inout) :: c(*)
      integer(c_int), value :: threaded
    end function fkb_cpu_sgemm_nt
    integer(c_int) function fkb_cpu_sgemm_tn(m, n, k, a, b, c, threaded) &
        bind(C, name='fkb_cpu_sgemm_tn')
      import :: c_int, c_int64_t, c_float
      integer(c_int64_t), value :: m, n, k
      real(c_float), intent(in) :: a(*), b(*)
      real(c_float), intent(inout) :: c(*)
      integer(c_int), value :: threaded
    end function fkb_cpu_sgemm_tn
    integer(c_int) function fkb_cpu_dgemm_nt(m, n, k, a, b, c, threaded) &
        bind(C, name='fkb_cpu_dgemm_nt')
      import :: c_int, c_int64_t, c_double
      integer(c_int64_t), value :: m, n, k
      real(c_double), intent(in) :: a(*), b(*)
      real(c_double), intent(inout) :: c(*)
      integer(c_int), value :: threaded
    end function fkb_cpu_dgemm_nt
    integer(c_int) function fkb_cpu_dgemm_tn(m, n, k, a, b, c, threaded) &
        bind(C, name='fkb_cpu_dgemm_tn')
      import :: c_int, c_int64_t, c_double
      integer(c_int64_t), value :: m, n, k
      real(c_double), intent(in) :: a(*), b(*)
      real(c_double), intent(inout) :: c(*)
      integer(c_int), value :: threaded
    end function fkb_cpu_dgemm_tn
  end interface

  interface fused_gemm
    !! c(m,n) = act(a(m,k) . b(k,n) + bias) with FKB's own kernels, act one of FUSED_*;
    !! .false. (nothing written) where they are unavailable: the caller then uses gemm.
    module procedure fused_gemm_r32, fused_gemm_r64
  end interface fused_gemm

  interface gemm
    !! c(m,n) = a(m,k) . b(k,n), column-major; a is passed flat, b and c as contiguous 2-D.
    module procedure gemm_r32, gemm_r64
  end interface gemm

  interface gemv
    !! y(m,1) = a(m,k) . x(k,1): the single-sample case, where GEMV beats GEMM.
    module procedure gemv_r32, gemv_r64
  end interface gemv

  interface gemm_nt
    !! c(m,n) = a(m,k) . b(n,k)^T + beta c, c passed flat (a weight gradient: dz . x^T).
    module procedure gemm_nt_r32, gemm_nt_r64
  end interface gemm_nt

  interface gemm_tn
    !! c(m,n) = a(k,m)^T . b(k,n), a passed flat (an input gradient: W^T . dz).
    module procedure gemm_tn_r32, gemm_tn_r64
  end interface gemm_tn

contains

  subroutine init_backend()
    !! Reads FKB_DETERMINISTIC once; called by `load`, which needs exclusive access anyway.
    character(len=8) :: value
    integer :: length, st
    if (initialised) return
    call get_environment_variable('FKB_DETERMINISTIC', value, length, st)
    if (st == 0) deterministic = value == '1' .or. value == 'true' .or. value == 'on'
    initialised = .true.
  end subroutine init_backend

  subroutine set_deterministic(on)
    !! Switches deterministic mode for the whole process (not while predictions run).
    logical, intent(in) :: on
    initialised = .true.
    deterministic = on
  end subroutine set_deterministic

  logical function is_deterministic()
    is_deterministic = deterministic
  end function is_deterministic

  logical function fast_gemm_available()
    !! Whether gemm/gemv/fused_gemm run FKB's own kernels (not in deterministic mode).
    !! (the answer cached: it is asked once per layer of every call)
    integer, save :: cpu = -1   ! (benign race: every thread finds the same value)
    if (cpu < 0) cpu = fkb_cpu_gemm_available()
    fast_gemm_available = .not. deterministic .and. cpu == 1
  end function fast_gemm_available

  logical function fused_gemm_r32(m, n, k, a, b, c, act, alpha, threaded, bias) result(done)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)           ! flat m x k matrix (a layer's weights)
    real(real32), intent(in) :: b(k, *)
    real(real32), intent(inout) :: c(m, *)
    integer, intent(in) :: act
    real(real64), intent(in) :: alpha        !! LeakyReLU's slope, as the kernel should use it
    logical, intent(in) :: threaded          !! may use the OpenMP threads
    real(real32), intent(in), optional :: bias(*)
    done = .false.
    if (deterministic) return
    done = fkb_cpu_sgemm(m, n, k, a, b, c, bias, int(act, c_int), alpha, &
                         merge(1_c_int, 0_c_int, threaded)) == 0
  end function fused_gemm_r32

  logical function fused_gemm_r64(m, n, k, a, b, c, act, alpha, threaded, bias) result(done)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in) :: a(*)           ! flat m x k matrix (a layer's weights)
    real(real64), intent(in) :: b(k, *)
    real(real64), intent(inout) :: c(m, *)
    integer, intent(in) :: act
    real(real64), intent(in) :: alpha        !! LeakyReLU's slope, as the kernel should use it
    logical, intent(in) :: threaded          !! may use the OpenMP threads
    real(real64), intent(in), optional :: bias(*)
    done = .false.
    if (deterministic) return
    done = fkb_cpu_dgemm(m, n, k, a, b, c, bias, int(act, c_int), alpha, &
                         merge(1_c_int, 0_c_int, threaded)) == 0
  end function fused_gemm_r64

  subroutine gemm_r32(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)          ! flat m x k matrix (a layer's weights)
    real(real32), intent(in), contiguous :: b(:, :)
    real(real32), intent(inout), contiguous :: c(:, :)
    if (deterministic) then
      call fixed_order_r32(m, n, k, a, b, c)
      return
    end if
    if (fkb_cpu_sgemm(m, n, k, a, b, c, act=0_c_int, alpha=0.0_c_double, threaded=1_c_int) == 0) &
      return
    call sgemm('N', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(m, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real32, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_r32

  subroutine gemm_r64(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in) :: a(*)          ! flat m x k matrix (a layer's weights)
    real(real64), intent(in), contiguous :: b(:, :)
    real(real64), intent(inout), contiguous :: c(:, :)
    if (deterministic) then
      call fixed_order_r64(m, n, k, a, b, c)
      return
    end if
    if (fkb_cpu_dgemm(m, n, k, a, b, c, act=0_c_int, alpha=0.0_c_double, threaded=1_c_int) == 0) &
      return
    call dgemm('N', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real64, a, &
               int(max(m, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real64, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_r64

  subroutine gemv_r32(m, k, a, x, y)
    integer(int64), intent(in) :: m, k
    real(real32), intent(in) :: a(*)          ! flat m x k matrix
    real(real32), intent(in), contiguous :: x(:, :)     ! (k, 1)
    real(real32), intent(inout), contiguous :: y(:, :)  ! (m, 1)
    if (deterministic) then
      call fixed_order_r32(m, 1_int64, k, a, x, y)
      return
    end if
    if (fkb_cpu_sgemm(m, 1_int64, k, a, x, y, act=0_c_int, alpha=0.0_c_double, threaded=1_c_int) == 0) &
      return
    call sgemv('N', int(m, int32), int(k, int32), 1.0_real32, a, int(max(m, 1_int64), int32), &
               x, 1_int32, 0.0_real32, y, 1_int32)
  end subroutine gemv_r32

  subroutine gemv_r64(m, k, a, x, y)
    integer(int64), intent(in) :: m, k
    real(real64), intent(in) :: a(*)          ! flat m x k matrix
    real(real64), intent(in), contiguous :: x(:, :)     ! (k, 1)
    real(real64), intent(inout), contiguous :: y(:, :)  ! (m, 1)
    if (deterministic) then
      call fixed_order_r64(m, 1_int64, k, a, x, y)
      return
    end if
    if (fkb_cpu_dgemm(m, 1_int64, k, a, x, y, act=0_c_int, alpha=0.0_c_double, threaded=1_c_int) == 0) &
      return
    call dgemv('N', int(m, int32), int(k, int32), 1.0_real64, a, int(max(m, 1_int64), int32), &
               x, 1_int32, 0.0_real64, y, 1_int32)
  end subroutine gemv_r64

  subroutine gemm_nt_r32(m, n, k, a, b, c, beta)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in), contiguous :: a(:, :), b(:, :)
    real(real32), intent(inout) :: c(*)
    real(real32), intent(in) :: beta
    if (.not. deterministic .and. beta == 0) then
      if (fkb_cpu_sgemm_nt(m, n, k, a, b, c, threaded=1_c_int) == 0) return
    end if
    call sgemm('N', 'T', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(m, 1_int64), int32), b, int(max(n, 1_int64), int32), beta, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_nt_r32

  subroutine gemm_tn_r32(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)
    real(real32), intent(in), contiguous :: b(:, :)
    real(real32), intent(inout), contiguous :: c(:, :)
    if (.not. deterministic) then
      if (fkb_cpu_sgemm_tn(m, n, k, a, b, c, threaded=1_c_int) == 0) return
    end if
    call sgemm('T', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(k, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real32, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_tn_r32

  subroutine gemm_nt_r64(m, n, k, a, b, c, beta)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in), contiguous :: a(:, :), b(:, :)
    real(real64), intent(inout) :: c(*)
    real(real64), intent(in) :: beta
    if (.not. deterministic .and. beta == 0) then
      if (fkb_cpu_dgemm_nt(m, n, k, a, b, c, threaded=1_c_int) == 0) return
    end if
    call dgemm('N', 'T', int(m, int32), int(n, int32), int(k, int32), 1.0_real64, a, &
               int(max(m, 1_int64), int32), b, int(max(n, 1_int64), int32), beta, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_nt_r64

  subroutine gemm_tn_r64(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in) :: a(*)
    real(real64), intent(in), contiguous :: b(:, :)
    real(real64), intent(inout), contiguous :: c(:, :)
    if (.not. deterministic) then
      if (fkb_cpu_dgemm_tn(m, n, k, a, b, c, threaded=1_c_int) == 0) return
    end if
    call dgemm('T', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real64, a, &
               int(max(k, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real64, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_tn_r64

  subroutine fixed_order_r32(m, n, k, a, b, c)
    integer, parameter :: wp = real32
    integer(int64), intent(in) :: m, n, k
    real(wp), intent(in) :: a(m, k)
    real(wp), intent(in) :: b(k, n)
    real(wp), intent(inout) :: c(m, n)
    include 'kernels/fixed_order_gemm.inc'
  end subroutine fixed_order_r32

  subroutine fixed_order_r64(m, n, k, a, b, c)
    integer, parameter :: wp = real64
    integer(int64), intent(in) :: m, n, k
    real(wp), intent(in) :: a(m, k)
    real(wp), intent(in) :: b(k, n)
    real(wp), intent(inout) :: c(m, n)
    include 'kernels/fixed_order_gemm.inc'
  end subroutine fixed_order_r64

end module fkb_blas
