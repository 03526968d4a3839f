!! The compute backend's matrix products, behind one generic interface.
!!
!! Everything numerical above this module calls `gemm`/`gemv` for either precision; a GPU or
!! other backend replaces this module without touching the layers. BLAS is called with the
!! reference (LP64, 32-bit integer) interface that every BLAS provides.
module fkb_blas
  use iso_fortran_env, only: real32, real64, int32, int64
  implicit none
  private
  public :: gemm, gemv, BLAS_INT_MAX

  integer(int64), parameter :: BLAS_INT_MAX = huge(1_int32)  !! largest dimension BLAS takes

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

contains

  subroutine gemm_r32(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real32), intent(in) :: a(*)          ! flat m x k matrix (a layer's weights)
    real(real32), intent(in), contiguous :: b(:, :)
    real(real32), intent(inout), contiguous :: c(:, :)
    call sgemm('N', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real32, a, &
               int(max(m, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real32, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_r32

  subroutine gemm_r64(m, n, k, a, b, c)
    integer(int64), intent(in) :: m, n, k
    real(real64), intent(in) :: a(*)          ! flat m x k matrix (a layer's weights)
    real(real64), intent(in), contiguous :: b(:, :)
    real(real64), intent(inout), contiguous :: c(:, :)
    call dgemm('N', 'N', int(m, int32), int(n, int32), int(k, int32), 1.0_real64, a, &
               int(max(m, 1_int64), int32), b, int(max(k, 1_int64), int32), 0.0_real64, c, &
               int(max(m, 1_int64), int32))
  end subroutine gemm_r64

  subroutine gemv_r32(m, k, a, x, y)
    integer(int64), intent(in) :: m, k
    real(real32), intent(in) :: a(*)          ! flat m x k matrix
    real(real32), intent(in), contiguous :: x(:, :)     ! (k, 1)
    real(real32), intent(inout), contiguous :: y(:, :)  ! (m, 1)
    call sgemv('N', int(m, int32), int(k, int32), 1.0_real32, a, int(max(m, 1_int64), int32), &
               x, 1_int32, 0.0_real32, y, 1_int32)
  end subroutine gemv_r32

  subroutine gemv_r64(m, k, a, x, y)
    integer(int64), intent(in) :: m, k
    real(real64), intent(in) :: a(*)          ! flat m x k matrix
    real(real64), intent(in), contiguous :: x(:, :)     ! (k, 1)
    real(real64), intent(inout), contiguous :: y(:, :)  ! (m, 1)
    call dgemv('N', int(m, int32), int(k, int32), 1.0_real64, a, int(max(m, 1_int64), int32), &
               x, 1_int32, 0.0_real64, y, 1_int32)
  end subroutine gemv_r64

end module fkb_blas
