!! The machine's own GEMM rate for a network's shapes: the chain of BLAS sgemm/dgemm calls a
!! batched dense forward pass needs (no bias, no activation), with the same BLAS library FKB
!! links (CMake FindBLAS). This is the bound the systems are compared with.
!!
!! Usage: bench_gemm JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S
!! Job lines:
!!   chain LABEL DTYPE BATCH NDIMS d0 d1 ... d(NDIMS-1)
!!     layer l: C(d_l, BATCH) = W * A(d_{l-1}, BATCH); timed twice, with W stored (d_l, d_{l-1})
!!     ('N','N') and stored (d_{l-1}, d_l) as Keras' kernel ('T','N'); for BATCH = 1 also as
!!     sgemv/dgemv chains in both storages; the fastest variant is reported
!!   square LABEL DTYPE N      one N x N x N GEMM (the machine's peak-ish rate)
!!   gemms LABEL DTYPE NG  M1 N1 K1 R1  M2 N2 K2 R2 ...
!!     NG GEMMs in turn, each on operands of its own: C(M, N) = W(M, K) * A(K, N), done R times
!!     in a row (the BLAS work of a Conv1D layer's im2col product, or of an LSTM's input
!!     projection and its per-step recurrent products); timed as for chain, with W stored
!!     (M, K) 'N','N' and (K, M) 'T','N', and where some N = 1 also with gemv for those
!! Prints `result LABEL SECONDS_PER_CALL SAMPLES CALLS_PER_SAMPLE` (chain: the faster variant).
module gemm_state
  use iso_fortran_env, only: real32, real64
  implicit none
  type :: buf32
    real(real32), allocatable :: a(:, :)
  end type buf32
  type :: buf64
    real(real64), allocatable :: a(:, :)
  end type buf64
  type(buf32), allocatable :: w32(:), wt32(:), act32(:)
  type(buf64), allocatable :: w64(:), wt64(:), act64(:)
  integer, allocatable :: d(:)
  integer :: batch = 0
  ! the gemms job: shapes and repeats, weights both ways, inputs and results
  integer, allocatable :: gm(:), gn(:), gk(:), gr(:)
  type(buf32), allocatable :: gw32(:), gwt32(:), ga32(:), gc32(:)
  type(buf64), allocatable :: gw64(:), gwt64(:), ga64(:), gc64(:)
  character(len=1) :: ta = 'N'
  logical :: use_gemv = .false.
  external :: sgemm, dgemm, sgemv, dgemv
contains
  subroutine work32()
    integer :: l
    do l = 2, size(d)
      if (use_gemv .and. ta == 'N') then
        call sgemv('N', d(l), d(l - 1), 1.0_real32, w32(l)%a, d(l), act32(l - 1)%a, 1, &
                   0.0_real32, act32(l)%a, 1)
      else if (use_gemv) then
        call sgemv('T', d(l - 1), d(l), 1.0_real32, wt32(l)%a, d(l - 1), act32(l - 1)%a, 1, &
                   0.0_real32, act32(l)%a, 1)
      else if (ta == 'N') then
        call sgemm('N', 'N', d(l), batch, d(l - 1), 1.0_real32, w32(l)%a, d(l), &
                   act32(l - 1)%a, d(l - 1), 0.0_real32, act32(l)%a, d(l))
      else
        call sgemm('T', 'N', d(l), batch, d(l - 1), 1.0_real32, wt32(l)%a, d(l - 1), &
                   act32(l - 1)%a, d(l - 1), 0.0_real32, act32(l)%a, d(l))
      end if
    end do
  end subroutine work32
  subroutine work64()
    integer :: l
    do l = 2, size(d)
      if (use_gemv .and. ta == 'N') then
        call dgemv('N', d(l), d(l - 1), 1.0_real64, w64(l)%a, d(l), act64(l - 1)%a, 1, &
                   0.0_real64, act64(l)%a, 1)
      else if (use_gemv) then
        call dgemv('T', d(l - 1), d(l), 1.0_real64, wt64(l)%a, d(l - 1), act64(l - 1)%a, 1, &
                   0.0_real64, act64(l)%a, 1)
      else if (ta == 'N') then
        call dgemm('N', 'N', d(l), batch, d(l - 1), 1.0_real64, w64(l)%a, d(l), &
                   act64(l - 1)%a, d(l - 1), 0.0_real64, act64(l)%a, d(l))
      else
        call dgemm('T', 'N', d(l), batch, d(l - 1), 1.0_real64, wt64(l)%a, d(l - 1), &
                   act64(l - 1)%a, d(l - 1), 0.0_real64, act64(l)%a, d(l))
      end if
    end do
  end subroutine work64
  subroutine gwork32()
    integer :: g, r
    do g = 1, size(gm)
      do r = 1, gr(g)
        if (use_gemv .and. gn(g) == 1 .and. ta == 'N') then
          call sgemv('N', gm(g), gk(g), 1.0_real32, gw32(g)%a, gm(g), ga32(g)%a, 1, &
                     0.0_real32, gc32(g)%a, 1)
        else if (use_gemv .and. gn(g) == 1) then
          call sgemv('T', gk(g), gm(g), 1.0_real32, gwt32(g)%a, gk(g), ga32(g)%a, 1, &
                     0.0_real32, gc32(g)%a, 1)
        else if (ta == 'N') then
          call sgemm('N', 'N', gm(g), gn(g), gk(g), 1.0_real32, gw32(g)%a, gm(g), &
                     ga32(g)%a, gk(g), 0.0_real32, gc32(g)%a, gm(g))
        else
          call sgemm('T', 'N', gm(g), gn(g), gk(g), 1.0_real32, gwt32(g)%a, gk(g), &
                     ga32(g)%a, gk(g), 0.0_real32, gc32(g)%a, gm(g))
        end if
      end do
    end do
  end subroutine gwork32
  subroutine gwork64()
    integer :: g, r
    do g = 1, size(gm)
      do r = 1, gr(g)
        if (use_gemv .and. gn(g) == 1 .and. ta == 'N') then
          call dgemv('N', gm(g), gk(g), 1.0_real64, gw64(g)%a, gm(g), ga64(g)%a, 1, &
                     0.0_real64, gc64(g)%a, 1)
        else if (use_gemv .and. gn(g) == 1) then
          call dgemv('T', gk(g), gm(g), 1.0_real64, gwt64(g)%a, gk(g), ga64(g)%a, 1, &
                     0.0_real64, gc64(g)%a, 1)
        else if (ta == 'N') then
          call dgemm('N', 'N', gm(g), gn(g), gk(g), 1.0_real64, gw64(g)%a, gm(g), &
                     ga64(g)%a, gk(g), 0.0_real64, gc64(g)%a, gm(g))
        else
          call dgemm('T', 'N', gm(g), gn(g), gk(g), 1.0_real64, gwt64(g)%a, gk(g), &
                     ga64(g)%a, gk(g), 0.0_real64, gc64(g)%a, gm(g))
        end if
      end do
    end do
  end subroutine gwork64
  subroutine gsetup(dtype)
    !! Operands of the gemms job (shapes in gm, gn, gk); the previous job's are freed.
    integer, intent(in) :: dtype
    integer :: g, ng
    if (allocated(gw32)) deallocate(gw32, gwt32, ga32, gc32)
    if (allocated(gw64)) deallocate(gw64, gwt64, ga64, gc64)
    ng = size(gm)
    if (dtype == 32) then
      allocate(gw32(ng), gwt32(ng), ga32(ng), gc32(ng))
      do g = 1, ng
        allocate(gw32(g)%a(gm(g), gk(g)), ga32(g)%a(gk(g), gn(g)), gc32(g)%a(gm(g), gn(g)))
        call random_number(gw32(g)%a)
        gw32(g)%a = (gw32(g)%a - 0.5_real32) / gk(g)
        gwt32(g)%a = transpose(gw32(g)%a)
        call random_number(ga32(g)%a)
        gc32(g)%a = 0
      end do
    else
      allocate(gw64(ng), gwt64(ng), ga64(ng), gc64(ng))
      do g = 1, ng
        allocate(gw64(g)%a(gm(g), gk(g)), ga64(g)%a(gk(g), gn(g)), gc64(g)%a(gm(g), gn(g)))
        call random_number(gw64(g)%a)
        gw64(g)%a = (gw64(g)%a - 0.5_real64) / gk(g)
        gwt64(g)%a = transpose(gw64(g)%a)
        call random_number(ga64(g)%a)
        gc64(g)%a = 0
      end do
    end if
  end subroutine gsetup
end module gemm_state

program bench_gemm
  use iso_fortran_env, only: real32, real64
  use gemm_state
  use bench_timer, only: measure, field, ifield
  implicit none
  character(len=4096) :: jobfile, arg, line
  character(len=64) :: kind, label
  real(real64) :: budget, block_target, med, med_t
  integer :: min_samples, max_samples, u, ios, dtype, nd, n, k, l, nsq

  if (command_argument_count() /= 5) &
    error stop 'usage: bench_gemm JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S'
  call get_command_argument(1, jobfile)
  call get_command_argument(2, arg); read (arg, *) budget
  call get_command_argument(3, arg); read (arg, *) min_samples
  call get_command_argument(4, arg); read (arg, *) max_samples
  call get_command_argument(5, arg); read (arg, *) block_target

  open (newunit=u, file=trim(jobfile), status='old', action='read')
  do
    read (u, '(a)', iostat=ios) line
    if (ios /= 0) exit
    if (len_trim(line) == 0) cycle
    kind = field(line, 1)
    label = field(line, 2)
    dtype = ifield(line, 3)
    if (allocated(d)) deallocate(d)
    if (trim(kind) == 'gemms') then
      call run_gemms()
      cycle
    end if
    if (trim(kind) == 'chain') then
      batch = ifield(line, 4)
      nd = ifield(line, 5)
      allocate(d(nd))
      do l = 1, nd
        d(l) = ifield(line, 5 + l)
      end do
    else if (trim(kind) == 'square') then
      nsq = ifield(line, 4)
      allocate(d(2))
      d = nsq
      batch = nsq
    else
      error stop 'unknown job'
    end if
    call setup(dtype)
    ta = 'N'
    if (dtype == 32) then
      call measure(work32, budget, min_samples, max_samples, block_target, med, n, k)
    else
      call measure(work64, budget, min_samples, max_samples, block_target, med, n, k)
    end if
    if (trim(kind) == 'chain') then
      ta = 'T'
      if (dtype == 32) then
        call measure(work32, budget, min_samples, max_samples, block_target, med_t, n, k)
      else
        call measure(work64, budget, min_samples, max_samples, block_target, med_t, n, k)
      end if
      print '(a,1x,a,2(1x,a,es12.5))', 'detail', trim(label), 'NN', med, 'TN', med_t
      med = min(med, med_t)
      if (batch == 1) then    ! one sample: matrix-vector products may beat GEMM with n = 1
        use_gemv = .true.
        do l = 1, 2
          ta = merge('N', 'T', l == 1)
          if (dtype == 32) then
            call measure(work32, budget, min_samples, max_samples, block_target, med_t, n, k)
          else
            call measure(work64, budget, min_samples, max_samples, block_target, med_t, n, k)
          end if
          med = min(med, med_t)
        end do
        use_gemv = .false.
      end if
    end if
    print '(a,1x,a,1x,es16.9,1x,i0,1x,i0)', 'result', trim(label), med, n, k
    flush (6)
  end do
  close (u)

contains

  subroutine run_gemms()
    !! The gemms job: NN, TN, and gemv variants where some N = 1; prints the fastest.
    integer :: ng, g
    if (allocated(gm)) deallocate(gm, gn, gk, gr)
    ng = ifield(line, 4)
    allocate(gm(ng), gn(ng), gk(ng), gr(ng))
    do g = 1, ng
      gm(g) = ifield(line, 1 + 4 * g)
      gn(g) = ifield(line, 2 + 4 * g)
      gk(g) = ifield(line, 3 + 4 * g)
      gr(g) = ifield(line, 4 + 4 * g)
    end do
    call gsetup(dtype)
    use_gemv = .false.
    ta = 'N'
    call timed(med)
    ta = 'T'
    call timed(med_t)
    print '(a,1x,a,2(1x,a,es12.5))', 'detail', trim(label), 'NN', med, 'TN', med_t
    med = min(med, med_t)
    if (any(gn == 1)) then
      use_gemv = .true.
      do l = 1, 2
        ta = merge('N', 'T', l == 1)
        call timed(med_t)
        med = min(med, med_t)
      end do
      use_gemv = .false.
    end if
    print '(a,1x,a,1x,es16.9,1x,i0,1x,i0)', 'result', trim(label), med, n, k
    flush (6)
    if (dtype == 32) deallocate(gw32, gwt32, ga32, gc32)
    if (dtype == 64) deallocate(gw64, gwt64, ga64, gc64)
  end subroutine run_gemms

  subroutine timed(m)
    real(real64), intent(out) :: m
    if (dtype == 32) then
      call measure(gwork32, budget, min_samples, max_samples, block_target, m, n, k)
    else
      call measure(gwork64, budget, min_samples, max_samples, block_target, m, n, k)
    end if
  end subroutine timed

  subroutine setup(dtype)
    integer, intent(in) :: dtype
    if (allocated(w32)) deallocate(w32, wt32, act32)
    if (allocated(w64)) deallocate(w64, wt64, act64)
    if (dtype == 32) then
      allocate(w32(size(d)), wt32(size(d)), act32(size(d)))
      allocate(act32(1)%a(d(1), batch))
      call random_number(act32(1)%a)
      do l = 2, size(d)
        allocate(w32(l)%a(d(l), d(l - 1)), act32(l)%a(d(l), batch))
        call random_number(w32(l)%a)
        w32(l)%a = (w32(l)%a - 0.5_real32) / d(l - 1)
        wt32(l)%a = transpose(w32(l)%a)
        act32(l)%a = 0
      end do
    else
      allocate(w64(size(d)), wt64(size(d)), act64(size(d)))
      allocate(act64(1)%a(d(1), batch))
      call random_number(act64(1)%a)
      do l = 2, size(d)
        allocate(w64(l)%a(d(l), d(l - 1)), act64(l)%a(d(l), batch))
        call random_number(w64(l)%a)
        w64(l)%a = (w64(l)%a - 0.5_real64) / d(l - 1)
        wt64(l)%a = transpose(w64(l)%a)
        act64(l)%a = 0
      end do
    end if
  end subroutine setup

end program bench_gemm
