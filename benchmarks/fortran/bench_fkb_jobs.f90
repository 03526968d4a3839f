!! FKB from Fortran: runs a list of timing jobs against the installed package (`use fkb`).
!!
!! Usage: bench_fkb_jobs JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S
!! (JOBFILE - reads the jobs from stdin, answering each as it comes.)
!! Job lines (fields separated by blanks; paths without blanks):
!!   predict LABEL MODEL.fkb DTYPE BATCH   net%predict(x, y), x(n_in, BATCH) of kind DTYPE (32|64)
!!   rank1   LABEL MODEL.fkb DTYPE         net%predict(x, y), x(n_in), y(n_out): one sample
!!   load    LABEL MODEL.fkb               net%load(MODEL.fkb)
!!   check   LABEL MODEL.fkb DTYPE BATCH X.bin Y.bin
!!                                         not timed: reads x(n_in, BATCH) from X.bin (raw, of
!!                                         kind DTYPE: each sample flat in C order of its shape),
!!                                         writes y(n_out, BATCH) of net%predict(x, y), then the
!!                                         rank-1 net%predict(x(:, 1), y1) to Y.bin (raw)
!! Shaped models ((steps, channels) inputs, Conv1D, LSTM) take the same flat arrays:
!! n_in = net%n_inputs() values per sample.
!! Prints one line per job: `result LABEL SECONDS_PER_CALL SAMPLES CALLS_PER_SAMPLE`
!! (timing protocol in bench_timer.f90).
module fkb_jobs_state
  use iso_fortran_env, only: real32, real64
  use fkb
  implicit none
  type(fkb_network) :: net, scratch
  character(len=1024) :: net_path = '', load_path = ''
  real(real32), allocatable :: x32(:, :), y32(:, :), x1_32(:), y1_32(:)
  real(real64), allocatable :: x64(:, :), y64(:, :), x1_64(:), y1_64(:)
  real(real64) :: sink = 0
contains
  subroutine check(stat, what)
    integer, intent(in) :: stat
    character(len=*), intent(in) :: what
    if (stat /= FKB_OK) then
      print '(a)', 'error: ' // what // ' failed: ' // trim(fkb_status_name(stat))
      error stop 1
    end if
  end subroutine check
  subroutine work_p32()
    integer :: st
    call net%predict(x32, y32, stat=st)
    call check(st, 'predict')
  end subroutine work_p32
  subroutine work_p64()
    integer :: st
    call net%predict(x64, y64, stat=st)
    call check(st, 'predict')
  end subroutine work_p64
  subroutine work_r32()
    integer :: st
    call net%predict(x1_32, y1_32, stat=st)
    call check(st, 'predict')
  end subroutine work_r32
  subroutine work_r64()
    integer :: st
    call net%predict(x1_64, y1_64, stat=st)
    call check(st, 'predict')
  end subroutine work_r64
  subroutine work_load()
    integer :: st
    call scratch%load(trim(load_path), stat=st)
    call check(st, 'load')
  end subroutine work_load
end module fkb_jobs_state

program bench_fkb_jobs
  use iso_fortran_env, only: real64, input_unit
  use fkb
  use fkb_jobs_state
  use bench_timer, only: measure, field, ifield
  implicit none
  character(len=2048) :: jobfile, arg, line
  character(len=64) :: kind, label
  character(len=1024) :: path, xpath, ypath
  real(real64) :: budget, block_target, med
  integer :: min_samples, max_samples, u, ios, dtype, batch, n, k, st, uf

  if (command_argument_count() /= 5) &
    error stop 'usage: bench_fkb_jobs JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S'
  call get_command_argument(1, jobfile)
  call get_command_argument(2, arg); read (arg, *) budget
  call get_command_argument(3, arg); read (arg, *) min_samples
  call get_command_argument(4, arg); read (arg, *) max_samples
  call get_command_argument(5, arg); read (arg, *) block_target

  if (trim(jobfile) == '-') then  ! jobs from stdin, answered one by one (paired.py)
    u = input_unit
  else
    open (newunit=u, file=trim(jobfile), status='old', action='read')
  end if
  do
    read (u, '(a)', iostat=ios) line
    if (ios /= 0) exit
    if (len_trim(line) == 0) cycle
    kind = field(line, 1)
    label = field(line, 2)
    path = field(line, 3)
    select case (trim(kind))
    case ('predict', 'rank1')
      dtype = ifield(line, 4)
      batch = 1
      if (trim(kind) == 'predict') batch = ifield(line, 5)
      if (path /= net_path) then
        call net%load(trim(path), stat=st)
        call check(st, 'load ' // trim(path))
        net_path = path
      end if
      call prepare(dtype, batch)
      if (trim(kind) == 'predict' .and. dtype == 32) call measure(work_p32, budget, min_samples, &
        max_samples, block_target, med, n, k)
      if (trim(kind) == 'predict' .and. dtype == 64) call measure(work_p64, budget, min_samples, &
        max_samples, block_target, med, n, k)
      if (trim(kind) == 'rank1' .and. dtype == 32) call measure(work_r32, budget, min_samples, &
        max_samples, block_target, med, n, k)
      if (trim(kind) == 'rank1' .and. dtype == 64) call measure(work_r64, budget, min_samples, &
        max_samples, block_target, med, n, k)
    case ('load')
      load_path = path
      call measure(work_load, budget, min_samples, max_samples, block_target, med, n, k)
    case ('check')
      dtype = ifield(line, 4)
      batch = ifield(line, 5)
      xpath = field(line, 6)
      ypath = field(line, 7)
      if (path /= net_path) then
        call net%load(trim(path), stat=st)
        call check(st, 'load ' // trim(path))
        net_path = path
      end if
      call prepare(dtype, batch)
      open (newunit=uf, file=trim(xpath), access='stream', form='unformatted', status='old', &
            action='read')
      if (dtype == 32) then
        read (uf) x32
        x1_32 = x32(:, 1)
      else
        read (uf) x64
        x1_64 = x64(:, 1)
      end if
      close (uf)
      if (dtype == 32) then
        call work_p32()
        call work_r32()
      else
        call work_p64()
        call work_r64()
      end if
      open (newunit=uf, file=trim(ypath), access='stream', form='unformatted', &
            status='replace', action='write')
      if (dtype == 32) then
        write (uf) y32, y1_32
      else
        write (uf) y64, y1_64
      end if
      close (uf)
      print '(a,1x,a)', 'checked', trim(label)
      flush (6)
      cycle
    case default
      print '(a)', 'error: unknown job ' // trim(kind)
      error stop 1
    end select
    print '(a,1x,a,1x,es16.9,1x,i0,1x,i0)', 'result', trim(label), med, n, k
    flush (6)
  end do
  if (u /= input_unit) close (u)
  ! Keeps the outputs live so that no call can be optimised away.
  if (sink /= sink) print '(a)', 'NaN'

contains

  subroutine prepare(dtype, batch)
    integer, intent(in) :: dtype, batch
    integer :: ni, no
    ni = net%n_inputs()
    no = net%n_outputs()
    if (allocated(x32)) deallocate(x32, y32, x1_32, y1_32)
    if (allocated(x64)) deallocate(x64, y64, x1_64, y1_64)
    if (dtype == 32) then
      allocate(x32(ni, batch), y32(no, batch), x1_32(ni), y1_32(no))
      call random_number(x32)
      x32 = 2 * x32 - 1
      x1_32 = x32(:, 1)
      y32 = 0
      y1_32 = 0
    else if (dtype == 64) then
      allocate(x64(ni, batch), y64(no, batch), x1_64(ni), y1_64(no))
      call random_number(x64)
      x64 = 2 * x64 - 1
      x1_64 = x64(:, 1)
      y64 = 0
      y1_64 = 0
    else
      error stop 'dtype must be 32 or 64'
    end if
  end subroutine prepare

end program bench_fkb_jobs
