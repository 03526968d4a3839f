!! The products of a Dense layer's backward pass (fkb_blas gemm_nt: dW = dz . x^T, gemm_tn:
!! dx = W^T . dz) on whichever path this machine takes: FKB's own kernels (AVX-512, or AVX2),
!! or BLAS (CTest runs this test again with FKB_GEMM=avx2 and =blas).
!!  1. accuracy against real128: every element within the rounding-error bound of a length-k
!!     dot product, gamma_k * sum_p |a(i,p) b(p,j)| (atol 0, so an element off by more than
!!     rounding fails), over shapes that exercise every register-tile remainder (rows mod 32,
!!     columns mod 12, one column, k = 1) for both precisions, and on operands large enough
!!     for the kernels to pack their row blocks;
!!  2. dW's columns do not depend on the batch split: the gradient of a batch equals the sum
!!     of the gradients of its halves to rounding (a kernel that skipped or double-counted
!!     samples of a tile would fail);
!!  3. gemm_tn leaves its operands unchanged (it transposes W into a buffer of its own), and a
!!     second call with a larger shape on the same thread (the buffer grows) is still right.
program test_backward_products
  use iso_fortran_env, only: real32, real64, real128, int64
  use fkb_blas, only: gemm_nt, gemm_tn, fast_gemm_available
  use fkb_testing, only: check, finish
  implicit none
  integer, parameter :: MS(7) = [1, 15, 16, 17, 33, 65, 256]
  integer, parameter :: NS(8) = [1, 2, 11, 12, 13, 25, 94, 257]
  integer, parameter :: KS(3) = [1, 7, 256]
  integer :: im, in, ik

  print '(a, l1)', 'FKB own kernels in use: ', fast_gemm_available()
  do im = 1, size(MS)
    do in = 1, size(NS)
      do ik = 1, size(KS)
        call case32(int(MS(im), int64), int(NS(in), int64), int(KS(ik), int64))
        call case64(int(MS(im), int64), int(NS(in), int64), int(KS(ik), int64))
      end do
    end do
  end do
  ! Operands beyond half of L2 (512 KiB), several column tiles: the kernels pack row blocks
  ! (dz for gemm_nt, the transposed W for gemm_tn), ending in edge panels
  call case32(700_int64, 25_int64, 300_int64)
  call case64(700_int64, 25_int64, 300_int64)
  call case32(1040_int64, 30_int64, 300_int64)
  call case64(1040_int64, 30_int64, 300_int64)
  call split_case()
  call finish()

contains

  function shape_text(what, m, n, k) result(s)
    character(len=*), intent(in) :: what
    integer(int64), intent(in) :: m, n, k
    character(len=:), allocatable :: s
    character(len=64) :: buf
    write (buf, '(a, " m=", i0, " n=", i0, " k=", i0)') what, m, n, k
    s = trim(buf)
  end function shape_text

  subroutine bound_check(c, a, b, u, what)
    !! |c - a.b| <= gamma_k sum_p |a(i,p) b(p,j)| element by element, a.b in real128.
    real(real64), intent(in) :: c(:, :), a(:, :), b(:, :), u   ! u: unit roundoff
    character(len=*), intent(in) :: what
    real(real128) :: exact(size(c, 1), size(c, 2)), mag(size(c, 1), size(c, 2)), gamma
    integer :: k
    k = size(a, 2)
    exact = matmul(real(a, real128), real(b, real128))
    mag = matmul(abs(real(a, real128)), abs(real(b, real128)))
    gamma = k * u / (1 - k * u)
    call check(all(abs(real(c, real128) - exact) <= gamma * mag), what)
  end subroutine bound_check

  subroutine case32(m, n, k)
    integer(int64), intent(in) :: m, n, k
    real(real32), allocatable :: dz(:, :), x(:, :), dw(:, :), w(:, :), dx(:, :), w0(:)
    real(real32), allocatable :: dw_flat(:), w_flat(:)
    allocate(dz(m, k), x(n, k), dw_flat(m * n), w(k, m), dx(m, n))
    call random_number(dz)
    call random_number(x)
    call random_number(w)
    dz = dz - 0.5
    x = x - 0.5
    w = w - 0.5
    dw_flat = huge(1.0_real32)
    ! dW (m x n) = dz (m x k) . x^T, x stored (n x k)
    call gemm_nt(m, n, k, dz, x, dw_flat, 0.0_real32)
    dw = reshape(dw_flat, [m, n])
    call bound_check(real(dw, real64), real(dz, real64), transpose(real(x, real64)), &
                     real(epsilon(1.0_real32), real64) / 2, shape_text('float32 gemm_nt', m, n, k))
    ! dx (m x n) = w^T . b, w stored (k x m), b (k x n)
    dx = huge(1.0_real32)
    w_flat = reshape(w, [k * m])   ! (the weights as a layer holds them: flat)
    w0 = w_flat
    call gemm_tn(m, n, k, w_flat, transpose(x), dx)
    call bound_check(real(dx, real64), transpose(real(w, real64)), transpose(real(x, real64)), &
                     real(epsilon(1.0_real32), real64) / 2, shape_text('float32 gemm_tn', m, n, k))
    call check(all(w_flat == w0), shape_text('float32 gemm_tn leaves W as it was', m, n, k))
  end subroutine case32

  subroutine case64(m, n, k)
    integer(int64), intent(in) :: m, n, k
    real(real64), allocatable :: dz(:, :), x(:, :), dw(:, :), w(:, :), dx(:, :), w0(:)
    real(real64), allocatable :: dw_flat(:), w_flat(:)
    allocate(dz(m, k), x(n, k), dw_flat(m * n), w(k, m), dx(m, n))
    call random_number(dz)
    call random_number(x)
    call random_number(w)
    dz = dz - 0.5
    x = x - 0.5
    w = w - 0.5
    dw_flat = huge(1.0_real64)
    call gemm_nt(m, n, k, dz, x, dw_flat, 0.0_real64)
    dw = reshape(dw_flat, [m, n])
    call bound_check(dw, dz, transpose(x), epsilon(1.0_real64) / 2, &
                     shape_text('float64 gemm_nt', m, n, k))
    dx = huge(1.0_real64)
    w_flat = reshape(w, [k * m])   ! (the weights as a layer holds them: flat)
    w0 = w_flat
    call gemm_tn(m, n, k, w_flat, transpose(x), dx)
    call bound_check(dx, transpose(w), transpose(x), epsilon(1.0_real64) / 2, &
                     shape_text('float64 gemm_tn', m, n, k))
    call check(all(w_flat == w0), shape_text('float64 gemm_tn leaves W as it was', m, n, k))
  end subroutine case64

  subroutine split_case()
    ! dW of 300 samples = dW of the first 137 + dW of the other 163 (to rounding).
    integer(int64), parameter :: m = 70, n = 50, k = 300, k1 = 137
    real(real64) :: dz(m, k), x(n, k), full(m * n), part1(m * n), part2(m * n), mag(m, n)
    call random_number(dz)
    call random_number(x)
    dz = dz - 0.5
    x = x - 0.5
    call gemm_nt(m, n, k, dz, x, full, 0.0_real64)
    call gemm_nt(m, n, k1, dz(:, 1:k1), x(:, 1:k1), part1, 0.0_real64)
    call gemm_nt(m, n, k - k1, dz(:, k1 + 1:), x(:, k1 + 1:), part2, 0.0_real64)
    mag = matmul(abs(dz), transpose(abs(x)))
    call check(all(abs(reshape(full - (part1 + part2), [m, n])) <= &
                   2 * k * epsilon(1.0_real64) * mag), &
               'gemm_nt: a batch''s gradient is the sum of its halves''')
  end subroutine split_case

end program test_backward_products
