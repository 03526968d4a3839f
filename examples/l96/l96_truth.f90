!! The "truth": the two-scale Lorenz-96 system, integrated with RK4 at dt = 0.001.
!!
!!   l96_truth run OUTDIR SPINUP TRAIN VALID TEST [SEED]
!!       Spins up for SPINUP model time units (MTU), then writes three consecutive segments
!!       of TRAIN, VALID and TEST MTU, sampled every 0.005 MTU (the one-scale model's step):
!!       OUTDIR/{train,valid,test}_{x,u}.bin, float64 arrays (K, n) in Fortran order, i.e.
!!       numpy (n, K) C order; X_k and U_k = -(h c / b) sum_j Y_{j,k}. OUTDIR/meta.txt says
!!       the sizes.
!!   l96_truth step STATE_IN STATE_OUT NSTEPS DT
!!       Reads a state [X(K), Y(J*K)] (float64), takes NSTEPS RK4 steps of size DT and writes
!!       the new state the same way (used by the tests against an independent implementation).
program l96_truth
  use l96_core, only: dp, l96_config, two_scale_step, subgrid_tendency
  implicit none
  type(l96_config) :: cfg
  character(len=1024) :: mode

  call get_command_argument(1, mode)
  select case (trim(mode))
  case ('run')
    call run_truth()
  case ('step')
    call step_state()
  case default
    print '(a)', 'usage: l96_truth run OUTDIR SPINUP TRAIN VALID TEST [SEED]'
    print '(a)', '       l96_truth step STATE_IN STATE_OUT NSTEPS DT'
    error stop 2
  end select

contains

  subroutine run_truth()
    real(dp), parameter :: dt = 0.001_dp
    integer, parameter :: every = 5          ! samples every 0.005 MTU
    character(len=1024) :: outdir, arg
    character(len=5), parameter :: names(3) = ['train', 'valid', 'test ']
    real(dp) :: spinup, lengths(3)
    real(dp), allocatable :: x(:), y(:), xs(:, :), us(:, :)
    integer :: seed, i, s, n, u, nsteps
    integer, allocatable :: seeds(:)

    if (command_argument_count() < 6) error stop 'l96_truth run: too few arguments'
    call get_command_argument(2, outdir)
    call get_command_argument(3, arg); read (arg, *) spinup
    do s = 1, 3
      call get_command_argument(3 + s, arg); read (arg, *) lengths(s)
    end do
    seed = 1
    if (command_argument_count() >= 7) then
      call get_command_argument(7, arg); read (arg, *) seed
    end if

    ! Initial state: X near F/4 plus noise, small random Y; the seed fixes everything.
    call random_seed(size=n)
    seeds = [(104729 * seed + 7919 * i, i = 1, n)]
    call random_seed(put=seeds)
    allocate(x(cfg%nk), y(cfg%nk * cfg%nj))
    call random_number(x)
    call random_number(y)
    x = cfg%forcing / 4 + (x - 0.5_dp)
    y = 0.1_dp * (y - 0.5_dp)

    nsteps = nint(spinup / dt)
    do i = 1, nsteps
      call two_scale_step(cfg, dt, x, y)
    end do

    open (newunit=u, file=trim(outdir) // '/meta.txt', status='replace', action='write')
    write (u, '(a,i0)') 'nk ', cfg%nk
    write (u, '(a,i0)') 'nj ', cfg%nj
    write (u, '(a,g0)') 'F ', cfg%forcing
    write (u, '(a,g0)') 'h ', cfg%h
    write (u, '(a,g0)') 'b ', cfg%b
    write (u, '(a,g0)') 'c ', cfg%c
    write (u, '(a,g0)') 'dt ', dt
    write (u, '(a,g0)') 'dt_out ', dt * every
    write (u, '(a,g0)') 'spinup ', spinup
    do s = 1, 3
      n = nint(lengths(s) / (dt * every))
      allocate(xs(cfg%nk, n), us(cfg%nk, n))
      do i = 1, n
        do nsteps = 1, every
          call two_scale_step(cfg, dt, x, y)
        end do
        xs(:, i) = x
        call subgrid_tendency(cfg, y, us(:, i))
      end do
      call write_array(trim(outdir) // '/' // trim(names(s)) // '_x.bin', xs)
      call write_array(trim(outdir) // '/' // trim(names(s)) // '_u.bin', us)
      write (u, '(a,i0)') 'n_' // trim(names(s)) // ' ', n
      deallocate(xs, us)
    end do
    close (u)
  end subroutine run_truth

  subroutine write_array(path, a)
    character(len=*), intent(in) :: path
    real(dp), intent(in) :: a(:, :)
    integer :: u
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace', &
          action='write')
    write (u) a
    close (u)
  end subroutine write_array

  subroutine step_state()
    character(len=1024) :: fin, fout, arg
    real(dp) :: x(cfg%nk), y(cfg%nk * cfg%nj), dt
    integer :: nsteps, i, u
    if (command_argument_count() < 5) error stop 'l96_truth step: too few arguments'
    call get_command_argument(2, fin)
    call get_command_argument(3, fout)
    call get_command_argument(4, arg); read (arg, *) nsteps
    call get_command_argument(5, arg); read (arg, *) dt
    open (newunit=u, file=trim(fin), access='stream', form='unformatted', status='old', &
          action='read')
    read (u) x, y
    close (u)
    do i = 1, nsteps
      call two_scale_step(cfg, dt, x, y)
    end do
    open (newunit=u, file=trim(fout), access='stream', form='unformatted', status='replace', &
          action='write')
    write (u) x, y
    close (u)
  end subroutine step_state

end program l96_truth
