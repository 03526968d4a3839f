!! y = act(W x + b) over a batch: the hot path of Dense and Conv1D.
!!
!! With FKB's own kernels (fkb_blas: x86-64 with AVX-512 or AVX2), linear/ReLU/LeakyReLU are
!! applied in the product's registers and the whole call is one threaded kernel. Any other
!! activation runs on blocks of samples right after the block's product, while it is still in
!! cache, and the blocks are shared among the OpenMP threads. Elsewhere: one BLAS product over the batch,
!! then one cache-blocked bias+activation pass. The result is the same whichever way a batch
!! is cut, since every element's sum and activation depend only on its own sample.
module fkb_affine
  use iso_fortran_env, only: real32, real64, int64
  use omp_lib, only: omp_in_parallel
  use fkb_activation, only: fkb_activation_t, apply_activation, bias_activation, ACT_LINEAR, &
                            ACT_RELU, ACT_LEAKY_RELU
  use fkb_blas, only: gemm, gemv, fused_gemm, fast_gemm_available, FUSED_NONE, FUSED_RELU, &
                      FUSED_LEAKY
  implicit none
  private
  public :: affine

  interface affine
    !! y(m, n) = act(w(m, k) . x(k, n) + b); b absent means no bias.
    module procedure affine_r32, affine_r64
  end interface affine

  !> Samples per block when the activation runs apart from the product: a block of a 256-wide
  !! layer's output (112 KiB in float32) stays in L2 between the two.
  integer(int64), parameter :: BLOCK = 112
  !> Fewer multiply-adds than this run on one thread (as in the C kernels: waking threads,
  !! or losing a core while spin-waiting, costs more than it saves on small products).
  integer(int64), parameter :: PARALLEL_MIN = 2_int64**20

contains

  integer function fused_code(act, alpha)
    !! The kernel's code for act, or -1 when the kernel cannot apply it.
    type(fkb_activation_t), intent(in) :: act
    real(real64), intent(out) :: alpha
    alpha = 0
    select case (act%id)
    case (ACT_LINEAR)
      fused_code = FUSED_NONE
    case (ACT_RELU)
      fused_code = FUSED_RELU
    case (ACT_LEAKY_RELU)
      fused_code = FUSED_LEAKY
      alpha = real(real(act%alpha, real32), real64)   ! TF: float32 (as the Fortran kernel)
    case default
      fused_code = -1
    end select
  end function fused_code

  subroutine affine_r32(act, m, n, k, w, x, y, b)
    integer, parameter :: wp = real32
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n, k
    real(wp), intent(in) :: w(*)
    real(wp), intent(in), contiguous :: x(:, :)
    real(wp), intent(inout), contiguous :: y(:, :)
    real(wp), intent(in), optional, contiguous :: b(:)
    include 'kernels/affine.inc'
  end subroutine affine_r32

  subroutine affine_r64(act, m, n, k, w, x, y, b)
    integer, parameter :: wp = real64
    type(fkb_activation_t), intent(in) :: act
    integer(int64), intent(in) :: m, n, k
    real(wp), intent(in) :: w(*)
    real(wp), intent(in), contiguous :: x(:, :)
    real(wp), intent(inout), contiguous :: y(:, :)
    real(wp), intent(in), optional, contiguous :: b(:)
    include 'kernels/affine.inc'
  end subroutine affine_r64

end module fkb_affine
