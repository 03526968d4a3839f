!! y = act(W x + b) (fkb_affine), on whichever path this machine takes: FKB's own kernels
!! (AVX-512, or AVX2), or BLAS (CTest runs this test again with FKB_GEMM=avx2 and =blas).
!!  1. accuracy against real128: every element within the rounding-error bound of a length-k
!!     dot product, gamma_k * sum_p |w(i,p) x(p,j)|, carried through the activation, plus the
!!     activation's own rounding (reference() below), over shapes that exercise every register-tile remainder
!!     (rows mod 32, columns mod 12, k = 1; the first and last 13 samples of each batch), with
!!     and without bias, linear / relu / leaky_relu
!!     (fused in the kernel) and tanh / softmax (applied to blocks afterwards), and on weights
!!     large enough for the kernels to pack their row blocks;
!!  2. a sample's result does not depend on its batch: each column equals the product of that
!!     column alone (the single-sample path) and of a batch cut differently, bit for bit;
!!  3. NaN in a sample stays in that sample and reaches its outputs through ReLU / LeakyReLU;
!!     the other samples are untouched.
program test_affine
  use iso_fortran_env, only: real32, real64, real128, int64
  use ieee_arithmetic, only: ieee_value, ieee_quiet_nan, ieee_is_nan
  use fkb_activation, only: fkb_activation_t, activation_from_name
  use fkb_affine, only: affine
  use fkb_blas, only: fast_gemm_available
  use fkb_testing, only: check, finish
  use omp_lib, only: omp_set_num_threads
  implicit none
  integer, parameter :: MS(8) = [1, 15, 16, 17, 33, 65, 256, 300]
  integer, parameter :: NS(8) = [1, 2, 11, 12, 13, 25, 130, 257]
  integer, parameter :: KS(3) = [1, 5, 94]
  integer, parameter :: MS_PACKED(2) = [700, 1040], NS_PACKED(2) = [25, 130]
  integer(int64), parameter :: K_PACKED = 300
  character(len=*), parameter :: ACTS(5) = [character(len=10) :: 'linear', 'relu', &
                                            'leaky_relu', 'tanh', 'softmax']
  integer, parameter :: THREADS_TRIED(3) = [1, 2, 5]
  integer :: im, in, ik, ia, ib, threads, it

  print '(a, l1)', 'FKB own kernels in use: ', fast_gemm_available()
  do ia = 1, size(ACTS)
    do ib = merge(0, 1, ia == 1), 1     ! without a bias: linear only
      do im = 1, size(MS)
        do ik = 1, size(KS)
          do in = 1, size(NS)
            call case32(trim(ACTS(ia)), ib == 1, int(MS(im), int64), int(NS(in), int64), &
                        int(KS(ik), int64))
            call case64(trim(ACTS(ia)), ib == 1, int(MS(im), int64), int(NS(in), int64), &
                        int(KS(ik), int64))
          end do
        end do
      end do
    end do
  end do
  ! Weights beyond half of L2 (512 KiB) with several column tiles: the kernels pack blocks of
  ! rows into a contiguous buffer first; the last block ends in an edge panel (1040 float64:
  ! in whole panels; 700: rows mod 32 = 28, float64 rows mod 16 = 12) or a half one (1040
  ! float32: 16 rows).
  do im = 1, size(MS_PACKED)
    do in = 1, size(NS_PACKED)
      call case32('relu', .true., int(MS_PACKED(im), int64), int(NS_PACKED(in), int64), K_PACKED)
      call case64('leaky_relu', .true., int(MS_PACKED(im), int64), int(NS_PACKED(in), int64), &
                  K_PACKED)
      call case32('linear', .false., int(MS_PACKED(im), int64), int(NS_PACKED(in), int64), &
                  K_PACKED)
    end do
  end do
  ! Weights that fit L2 but not L1, read by many column tiles: packed once per call (on one
  ! thread from 16 tiles; split over the threads from 40 tiles per thread: 1000 samples on two
  ! threads), rows ending in an edge (300 rows) or a half (65) panel; on one thread, on two,
  ! and on five (more threads than this machine's cores: their progress is uneven, so threads
  ! take chunks of samples from the others' ranges, which every sample must survive).
  do it = 1, size(THREADS_TRIED)
    threads = THREADS_TRIED(it)
    call omp_set_num_threads(threads)
    call case32('leaky_relu', .true., 300_int64, 1000_int64, 94_int64)
    call case32('linear', .false., 65_int64, 1000_int64, 256_int64)
    call case64('relu', .true., 300_int64, 1000_int64, 94_int64)
    call case32('relu', .true., 256_int64, 200_int64, 94_int64)
  end do
  call nan_case32()
  call nan_case64()
  call finish()

contains

  function act_of(name) result(act)
    character(len=*), intent(in) :: name
    type(fkb_activation_t) :: act
    integer :: stat
    character(len=:), allocatable :: msg
    call activation_from_name(name, act, stat, msg)
    call check(stat == 0, 'activation ' // name)
    if (name == 'leaky_relu') act%alpha = 0.3_real64
  end function act_of

  function kind_shape(wp, m, n, k, with_bias) result(s)
    integer, intent(in) :: wp
    integer(int64), intent(in) :: m, n, k
    logical, intent(in) :: with_bias
    character(len=80) :: s
    write (s, '(a, i0, a, i0, a, i0, a, i0, a, l1)') 'kind=', wp, ' m=', m, ' n=', n, &
      ' k=', k, ' bias=', with_bias
  end function kind_shape

  subroutine reference(name, w, x, b, eps, yref, tol)
    !! In real128: y = act(W x + b) and the tolerance of a result computed in precision eps
    !! (unit roundoff): the dot product's bound gamma_k sum |w x| + |b|, carried through the
    !! activation, plus the activation's own rounding.
    character(len=*), intent(in) :: name
    real(real128), intent(in) :: w(:, :), x(:, :), b(:), eps
    real(real128), intent(out) :: yref(:, :), tol(:, :)
    real(real128) :: gam
    integer :: j, k
    k = size(w, 2)
    gam = (k + 2) * eps / (1 - (k + 2) * eps)
    yref = matmul(w, x)
    tol = gam * matmul(abs(w), abs(x))
    do j = 1, size(x, 2)
      yref(:, j) = yref(:, j) + b
      tol(:, j) = tol(:, j) + gam * abs(b)
      select case (name)
      case ('relu')
        where (yref(:, j) < 0) yref(:, j) = 0
      case ('leaky_relu')
        where (yref(:, j) < 0) yref(:, j) = yref(:, j) * real(real(0.3_real64, real32), real128)
      case ('tanh')
        yref(:, j) = tanh(yref(:, j))
        tol(:, j) = tol(:, j) * (1 - yref(:, j)**2) * 1.01_real128 + 4 * eps * abs(yref(:, j))
      case ('softmax')
        yref(:, j) = exp(yref(:, j) - maxval(yref(:, j)))
        yref(:, j) = yref(:, j) / sum(yref(:, j))
        ! each exp's argument off by at most 2 max(tol), each exp and the division rounded
        ! (a few eps), the sum of m terms (m eps)
        tol(:, j) = (4 * maxval(tol(:, j)) + (size(yref, 1) + 8) * eps) * yref(:, j)
      end select
    end do
    tol = tol + 4 * eps * abs(yref)
  end subroutine reference

  subroutine case32(name, with_bias, m, n, k)
    integer, parameter :: wp = real32
    character(len=*), intent(in) :: name
    logical, intent(in) :: with_bias
    integer(int64), intent(in) :: m, n, k
    include 'test_affine_case.inc'
  end subroutine case32

  subroutine case64(name, with_bias, m, n, k)
    integer, parameter :: wp = real64
    character(len=*), intent(in) :: name
    logical, intent(in) :: with_bias
    integer(int64), intent(in) :: m, n, k
    include 'test_affine_case.inc'
  end subroutine case64

  subroutine nan_case32()
    integer, parameter :: wp = real32
    include 'test_affine_nan.inc'
  end subroutine nan_case32

  subroutine nan_case64()
    integer, parameter :: wp = real64
    include 'test_affine_nan.inc'
  end subroutine nan_case64

end program test_affine
