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
module fkb_blas
  use iso_fortran_env, only: real32, real64, int32, int64
  use omp_lib, only: omp_in_parallel
  implicit none
  private
  public :: gemm, gemv, gemm_nt, gemm_tn, BLAS_INT_MAX, set_deterministic, is_deterministic, init_backend

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

  subroutine gemm_r32(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)          ! flat m x k matrix (a layer's weights)
    real(real32), intent(in), contiguous :: b(:, :)
    real(real32), intent(inout), contiguous :: c(:, :)
    if (deterministic) then
      call fixed_order_r32(m, n, k, a, b, c)
      return
    end if
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
    call dgemv('N', int(m, int32), int(k, int32), 1.0_real64, a, int(max(m, 1_int64), int32), &
               x, 1_int32, 0.0_real64, y, 1_int32)
  end subroutine gemv_r64

  subroutine gemm_nt_r32(m, n, k, a, b, c, beta)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in), contiguous :: a(:, :), b(:, :)
    real(real32), intent(inout) :: c(*)
    real(real32), intent(in) :: beta
    call sgemm('N', 'T', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(m, 1_int64), int32), b, int(max(n, 1_int64), int32), beta, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_nt_r32

  subroutine gemm_tn_r32(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)
    real(real32), intent(in), contiguous :: b(:, :)
    real(real32), intent(inout), contiguous :: c(:, :)
    call sgemm('T', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(k, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real32, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_tn_r32

  subroutine gemm_nt_r64(m, n, k, a, b, c, beta)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in), contiguous :: a(:, :), b(:, :)
    real(real64), intent(inout) :: c(*)
    real(real64), intent(in) :: beta
    call dgemm('N', 'T', int(m, int32), int(n, int32), int(k, int32), 1.0_real64, a, &
               int(max(m, 1_int64), int32), b, int(max(n, 1_int64), int32), beta, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_nt_r64

  subroutine gemm_tn_r64(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in) :: a(*)
    real(real64), intent(in), contiguous :: b(:, :)
    real(real64), intent(inout), contiguous :: c(:, :)
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
