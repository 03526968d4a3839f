!! A predict's result does not depend on the thread count: each sample's output on 2, 3 and 5
!! threads (more than this machine's cores: the threads' progress is uneven and they take
!! chunks of samples from each other) has the same bits as on one thread, for batches from 127
!! to 3001 samples and models whose values of different widths share workspace buffers (PReLU,
!! BatchNorm between Dense layers), fold time steps into columns (TimeDistributed, Reshape),
!! have recurrent layers (threaded across the batch per layer) or merges.
program test_thread_invariance
  use iso_fortran_env, only: real64
  use fkb
  use fkb_testing, only: check, finish, read_f64, case_t, read_cases
  use omp_lib, only: omp_set_num_threads
  implicit none
  character(len=1024) :: dir
  character(len=*), parameter :: STEMS(11) = [character(len=24) :: 'spcam_like', 'lstm', &
    'functional_chain', 'simple_rnn', 'bidirectional', 'time_distributed', 'reshape_permute', &
    'batch_normalization', 'dropout_flatten', 'prelu', 'residual_mlp']
  character(len=*), parameter :: PRECS(2) = [character(len=8) :: '_float32', '_float64']
  integer :: c, p

  call get_command_argument(1, dir)
  do c = 1, size(STEMS)
    do p = 1, size(PRECS)
      call run(trim(STEMS(c)) // trim(PRECS(p)))
    end do
  end do
  call finish()

contains

  subroutine run(name)
    character(len=*), intent(in) :: name
    ! (the case's samples repeated to make the larger batches)
    integer, parameter :: THREADS(3) = [2, 3, 5], SIZES(6) = [127, 300, 767, 1024, 2333, 3001]
    type(fkb_network) :: net
    type(case_t), allocatable :: cases(:)
    real(real64), allocatable :: x(:, :), one(:, :), many(:, :), xb(:, :), expect(:, :)
    integer :: i, j, k, t, n, idx, stat
    character(len=64) :: what
    idx = 0
    call read_cases(trim(dir), cases, all=.true.)
    do i = 1, size(cases)
      if (cases(i)%name == name) idx = i
    end do
    call check(idx > 0, name // ' is among the cases')
    if (idx == 0) return
    n = int(cases(idx)%n)
    allocate(x(cases(idx)%n_in, n), one(cases(idx)%n_out, n))
    call read_f64(trim(dir) // '/' // name // '.x.bin', x)
    call net%load(trim(dir) // '/' // name // '.fkb', stat=stat)
    call check(stat == FKB_OK, name // ': load')
    if (stat /= FKB_OK) return
    call omp_set_num_threads(1)
    call net%predict(x, one, stat=stat)
    call check(stat == FKB_OK, name // ': predict on one thread')
    allocate(xb(size(x, 1), maxval(SIZES)), expect(size(one, 1), maxval(SIZES)))
    allocate(many(size(one, 1), maxval(SIZES)))
    do j = 1, maxval(SIZES)
      xb(:, j) = x(:, mod(j - 1, n) + 1)
      expect(:, j) = one(:, mod(j - 1, n) + 1)
    end do
    do t = 1, size(THREADS)
      call omp_set_num_threads(THREADS(t))
      do k = 1, size(SIZES)
        many = -1
        call net%predict(xb(:, 1:SIZES(k)), many(:, 1:SIZES(k)), stat=stat)
        write (what, '(a, i0, a, i0, a)') ': batch ', SIZES(k), ' on ', THREADS(t), &
          ' threads = one thread, bit for bit'
        call check(stat == FKB_OK .and. all(many(:, 1:SIZES(k)) == expect(:, 1:SIZES(k))), &
                   name // trim(what))
      end do
    end do
    call omp_set_num_threads(2)
  end subroutine run

end program test_thread_invariance
