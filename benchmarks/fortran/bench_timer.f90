!! Shared timing protocol of the native benchmark programs (the Python worker and the C program
!! follow the same steps):
!!   1. two warm-up calls, then one timed call t1;
!!   2. block size k = ceiling(block_target / t1) calls (at least 1), so that calls far shorter
!!      than the clock's resolution and overhead are timed in blocks;
!!   3. timed blocks until at least min_samples blocks were taken and budget seconds spent, or
!!      max_samples blocks; each sample is (block time) / k;
!!   4. the result is the median sample, in seconds per call.
module bench_timer
  use iso_fortran_env, only: real64, int64
  implicit none
  private
  public :: work_iface, measure, now, median, field, ifield

  abstract interface
    subroutine work_iface()
    end subroutine work_iface
  end interface

contains

  function now() result(t)
    real(real64) :: t
    integer(int64) :: c, r
    call system_clock(c, r)
    t = real(c, real64) / real(r, real64)
  end function now

  subroutine measure(work, budget, min_samples, max_samples, block_target, med, n, k)
    procedure(work_iface) :: work
    real(real64), intent(in) :: budget, block_target
    integer, intent(in) :: min_samples, max_samples
    real(real64), intent(out) :: med
    integer, intent(out) :: n, k
    real(real64), allocatable :: s(:)
    real(real64) :: t0, t1, start
    integer :: i
    logical, save :: warmed = .false.
    ! The process's first measurement warms up for 0.25 s: a freshly started OpenMP pool can
    ! share one core with the main thread for its first ~0.1 s (measured: 7 calls of 16 ms
    ! each of the wide model at batch 1 on 2 threads, then 60 us).
    start = now()
    do while (.not. warmed .and. now() - start < 0.25_real64)
      call work()
    end do
    warmed = .true.
    call work()
    call work()
    t0 = now()
    call work()
    t1 = now() - t0
    k = int(max(1.0_real64, min(1.0e7_real64, block_target / max(t1, 1.0e-9_real64))))
    allocate(s(max(1, max_samples)))
    n = 0
    start = now()
    do
      t0 = now()
      do i = 1, k
        call work()
      end do
      n = n + 1
      s(n) = (now() - t0) / k
      if (n >= size(s)) exit
      if (n >= min_samples .and. now() - start >= budget) exit
    end do
    med = median(s(1:n))
  end subroutine measure

  function field(line, i) result(f)
    !! The i-th blank-separated field of line ('' if there are fewer). Job lines are split
    !! by hand: a list-directed read would stop at the first '/' of a path.
    character(len=*), intent(in) :: line
    integer, intent(in) :: i
    character(len=:), allocatable :: f
    integer :: p, q, j
    p = 1
    f = ''
    do j = 1, i
      do while (p <= len(line))
        if (line(p:p) /= ' ') exit
        p = p + 1
      end do
      if (p > len(line)) return
      q = p
      do while (q <= len(line))
        if (line(q:q) == ' ') exit
        q = q + 1
      end do
      if (j == i) f = line(p:q - 1)
      p = q
    end do
  end function field

  integer function ifield(line, i)
    character(len=*), intent(in) :: line
    integer, intent(in) :: i
    character(len=:), allocatable :: f
    f = field(line, i)
    read (f, *) ifield
  end function ifield

  function median(v) result(m)
    real(real64), intent(in) :: v(:)
    real(real64) :: m
    real(real64) :: s(size(v)), tmp
    integer :: i, j, n
    s = v
    n = size(s)
    do i = 2, n
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

end module bench_timer
