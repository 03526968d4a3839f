! Times fkb_network%predict on a .fkb model (float32 inputs/outputs).
!
! Usage: bench_fkb MODEL.fkb B1 R1 [B2 R2 ...] SINGLE_REPS
!   For each batch size Bi: 3 warm-up calls, then Ri timed calls; prints the median wall time
!   per sample (system_clock, int64 counts) as
!     batch <B> us_per_sample <t> reps <R>
!   Then the rank-1 (one sample, x(n_in) -> y(n_out)) call latency:
!     single_rank1 us_per_call <t> reps <R>
program bench_fkb
  use iso_fortran_env, only: real32, real64, int64
  use fkb
  implicit none
  type(fkb_network) :: net
  character(len=1024) :: path, arg
  character(len=512) :: msg
  integer :: stat, nargs, npairs, i, r, b, reps, n_in, n_out, single_reps
  real(real32), allocatable :: x(:, :), y(:, :), x1(:), y1(:)
  real(real64), allocatable :: t(:)
  real(real64) :: sink
  integer(int64) :: c0, c1, rate
  integer, allocatable :: seed(:)

  nargs = command_argument_count()
  if (nargs < 4 .or. mod(nargs, 2) /= 0) error stop 'usage: bench_fkb MODEL B1 R1 [B2 R2 ...] SINGLE_REPS'
  call get_command_argument(1, path)
  msg = ''
  call net%load(trim(path), stat=stat, errmsg=msg)
  if (stat /= FKB_OK) then
    print '(a)', 'load failed: ' // trim(msg)
    error stop 1
  end if
  n_in = net%n_inputs()
  n_out = net%n_outputs()
  call random_seed(size=i)
  allocate(seed(i))
  seed = 12345
  call random_seed(put=seed)
  call system_clock(count_rate=rate)
  sink = 0
  npairs = (nargs - 2) / 2

  do i = 1, npairs
    call get_command_argument(2 * i, arg)
    read (arg, *) b
    call get_command_argument(2 * i + 1, arg)
    read (arg, *) reps
    allocate(x(n_in, b), y(n_out, b), t(reps))
    call random_number(x)
    x = 2 * x - 1
    do r = 1, 3
      call net%predict(x, y, stat=stat)
      if (stat /= FKB_OK) error stop 'predict failed'
    end do
    do r = 1, reps
      call system_clock(c0)
      call net%predict(x, y, stat=stat)
      call system_clock(c1)
      t(r) = real(c1 - c0, real64) / real(rate, real64)
      sink = sink + y(1, 1)
    end do
    print '(a,i0,a,f0.4,a,i0)', 'batch ', b, ' us_per_sample ', 1e6_real64 * median(t) / b, &
      ' reps ', reps
    deallocate(x, y, t)
  end do

  call get_command_argument(nargs, arg)
  read (arg, *) single_reps
  allocate(x1(n_in), y1(n_out), t(single_reps))
  call random_number(x1)
  x1 = 2 * x1 - 1
  do r = 1, 10
    call net%predict(x1, y1, stat=stat)
    if (stat /= FKB_OK) error stop 'predict (rank 1) failed'
  end do
  do r = 1, single_reps
    call system_clock(c0)
    call net%predict(x1, y1, stat=stat)
    call system_clock(c1)
    t(r) = real(c1 - c0, real64) / real(rate, real64)
    sink = sink + y1(1)
  end do
  print '(a,f0.4,a,i0)', 'single_rank1 us_per_call ', 1e6_real64 * median(t), ' reps ', single_reps
  ! Keeps the outputs live so no call can be optimised away.
  if (sink /= sink) print '(a)', 'NaN in outputs'

contains

  function median(v) result(m)
    real(real64), intent(in) :: v(:)
    real(real64) :: m
    real(real64) :: s(size(v)), tmp
    integer :: i, j, n
    s = v
    n = size(s)
    do i = 2, n            ! insertion sort; n is small
      tmp = s(i)
      j = i - 1
      do while (j >= 1)
        if (s(j) <= tmp) exit
        s(j + 1) = s(j)
        j = j - 1
      end do
      s(j + 1) = tmp
    end do
    if (mod(n, 2) == 1) then
      m = s((n + 1) / 2)
    else
      m = 0.5_real64 * (s(n / 2) + s(n / 2 + 1))
    end if
  end function median

end program bench_fkb
