!! The per-sample baseline: a network evaluated one sample at a time with the intrinsic matmul,
!! allocating on every layer, as the original FKB did (loop_impl.inc). Does not use FKB.
!!
!! Usage: bench_loop JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S
!! (JOBFILE - reads the jobs from stdin, answering each as it comes.)
!! Job lines: loop LABEL WEIGHTS.raw DTYPE BATCH MAXCOLS
!!   times the loop over min(BATCH, MAXCOLS) columns (the per-sample cost does not depend on
!!   the batch) and prints the time scaled to BATCH columns:
!!   `result LABEL SECONDS_PER_CALL SAMPLES CALLS_PER_SAMPLE`
module loop32
  use iso_fortran_env, only: int32, real32, real64
  implicit none
  integer, parameter :: wp = real32
  include 'loop_impl.inc'
end module loop32

module loop64
  use iso_fortran_env, only: int32, real64
  implicit none
  integer, parameter :: wp = real64
  include 'loop_impl.inc'
end module loop64

module loop_state
  use iso_fortran_env, only: real32, real64
  use loop32, only: run32 => run_batch
  use loop64, only: run64 => run_batch
  implicit none
  real(real32), allocatable :: x32(:, :), y32(:, :)
  real(real64), allocatable :: x64(:, :), y64(:, :)
contains
  subroutine work32()
    call run32(x32, y32)
  end subroutine work32
  subroutine work64()
    call run64(x64, y64)
  end subroutine work64
end module loop_state

program bench_loop
  use iso_fortran_env, only: real64, input_unit
  use loop32, only: read32 => read_raw, layers32 => layers
  use loop64, only: read64 => read_raw
  use loop_state
  use bench_timer, only: measure, field, ifield
  implicit none
  character(len=2048) :: jobfile, arg, line
  character(len=64) :: kind, label
  character(len=1024) :: path
  real(real64) :: budget, block_target, med
  integer :: min_samples, max_samples, u, ios, dtype, batch, maxcols, ncols, n, k, ni, no

  if (command_argument_count() /= 5) &
    error stop 'usage: bench_loop JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S'
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
    dtype = ifield(line, 4)
    batch = ifield(line, 5)
    maxcols = ifield(line, 6)
    if (trim(kind) /= 'loop') error stop 'unknown job'
    ncols = min(batch, maxcols)
    ! The same file gives both precisions; sizes from the float32 copy.
    call read32(trim(path))
    ni = size(layers32(1)%w, 1)
    no = size(layers32(size(layers32))%w, 2)
    if (dtype == 32) then
      if (allocated(x32)) deallocate(x32, y32)
      allocate(x32(ni, ncols), y32(no, ncols))
      call random_number(x32)
      x32 = 2 * x32 - 1
      call measure(work32, budget, min_samples, max_samples, block_target, med, n, k)
    else
      call read64(trim(path))
      if (allocated(x64)) deallocate(x64, y64)
      allocate(x64(ni, ncols), y64(no, ncols))
      call random_number(x64)
      x64 = 2 * x64 - 1
      call measure(work64, budget, min_samples, max_samples, block_target, med, n, k)
    end if
    print '(a,1x,a,1x,es16.9,1x,i0,1x,i0)', 'result', trim(label), med * batch / ncols, n, k
    flush (6)
  end do
  if (u /= input_unit) close (u)
end program bench_loop
