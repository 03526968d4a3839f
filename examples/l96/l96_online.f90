!! The host model: one-scale Lorenz-96 whose subgrid tendency U_k is a Keras network run by FKB.
!!
!!   l96_online DATADIR OUTPREFIX N_IC T_RUN MODEL.fkb [MODEL2.fkb ...]
!!
!! MODEL.fkb is any network converted with `fkb convert` that maps a centred periodic stencil
!! [X_{k-r}, ..., X_{k+r}] (n_inputs = 2r + 1 <= K) to U_k (n_outputs = 1). With several models
!! they run as one fkb_ensemble (equal weights, their mean is the closure). Once per RK4 step (dt = 0.005) the network
!! is called on one batch holding all K sites; U is then held fixed during the step.
!!
!! From N_IC initial conditions spread over the truth's test segment (DATADIR/test_x.bin,
!! written by l96_truth) it runs T_RUN model time units (MTU) each and writes
!!   OUTPREFIX.txt       key value lines: forecast RMSE at lead times, time to divergence,
!!                       blow-ups, Hellinger distance of the PDF of X, autocorrelation error,
!!                       microseconds per step in the network and in the rest of the step
!!   OUTPREFIX_rmse.bin  RMSE against truth at every step up to the forecast horizon
!!   OUTPREFIX_traj.bin  X (K, 0:horizon) from the first initial condition
!!   OUTPREFIX_acf.bin   lag (MTU), autocorrelation of X in the model, in the truth
!!   OUTPREFIX_pdf.bin   bin edges, PDF of X in the model, in the truth
!! (float64, little-endian, Fortran order).
program l96_online
  use iso_fortran_env, only: int64
  use ieee_arithmetic, only: ieee_value, ieee_quiet_nan, ieee_is_nan
  use fkb
  use l96_core, only: dp, l96_config, one_scale_step, stencil
  implicit none

  real(dp), parameter :: horizon_max = 5       ! forecast horizon (MTU)
  real(dp), parameter :: blowup = 100          ! |X| beyond this (or NaN) ends a run
  real(dp), parameter :: lag_step = 0.05_dp, lag_max = 2   ! autocorrelation lags (MTU)
  integer, parameter :: nbins = 80             ! PDF bins over mean +- 5 sigma of the truth
  real(dp), parameter :: leads(5) = [0.2_dp, 0.5_dp, 1.0_dp, 2.0_dp, 4.0_dp]
  character(len=3), parameter :: lead_names(5) = ['0.2', '0.5', '1  ', '2  ', '4  ']

  type(l96_config) :: cfg
  type(fkb_network), allocatable :: nets(:)
  type(fkb_ensemble) :: ens
  character(len=1024), allocatable :: paths(:)
  character(len=1024) :: datadir, prefix, arg
  character(len=512) :: msg
  integer :: n_ic, nmodels, width, stat, i, m, n, nsteps, nfc, ntest, stride, skip, u
  integer :: nlag, lagstride, nvalid
  integer(int64) :: t0, t1, t2, rate, t_nn, t_rest, nstep_total
  real(dp) :: t_run, dt, mu, sigma, cap, nan
  real(dp), allocatable :: truth(:, :), traj(:, :, :), err2(:, :), inputs(:, :), outputs(:, :)
  real(dp), allocatable :: x(:), uk(:), t_blow(:), t_div(:), rmse(:), acf_m(:), acf_t(:)
  real(dp), allocatable :: edges(:), p_m(:), p_t(:)
  integer, allocatable :: idx(:)
  logical, allocatable :: blown(:)

  if (command_argument_count() < 5) then
    print '(a)', 'usage: l96_online DATADIR OUTPREFIX N_IC T_RUN MODEL.fkb [MODEL2.fkb ...]'
    error stop 2
  end if
  call get_command_argument(1, datadir)
  call get_command_argument(2, prefix)
  call get_command_argument(3, arg); read (arg, *) n_ic
  call get_command_argument(4, arg); read (arg, *) t_run
  nan = ieee_value(0.0_dp, ieee_quiet_nan)

  ! The parameterization: one network, or several averaged.
  nmodels = command_argument_count() - 4
  allocate(nets(nmodels), paths(nmodels))
  do i = 1, nmodels
    call get_command_argument(4 + i, arg)
    paths(i) = arg
    msg = ''
    call nets(i)%load(trim(arg), stat=stat, errmsg=msg)
    if (stat /= FKB_OK) call fail(trim(msg))
    if (nets(i)%n_outputs() /= 1) call fail(trim(arg) // ': expected 1 output (U_k)')
    if (i == 1) width = int(nets(i)%n_inputs())
    if (nets(i)%n_inputs() /= width .or. mod(width, 2) /= 1 .or. width > cfg%nk) &
      call fail(trim(arg) // ': expected an odd stencil width <= K, the same for all models')
  end do
  if (nmodels > 1) then
    call ens%load(paths, stat=stat, errmsg=msg)
    if (stat /= FKB_OK) call fail(trim(msg))
  end if

  ! The truth's test segment.
  dt = meta_value('dt_out')
  ntest = nint(meta_value('n_test'))
  if (nint(meta_value('nk')) /= cfg%nk) call fail('the data were made with another K')
  allocate(truth(cfg%nk, ntest))
  open (newunit=u, file=trim(datadir) // '/test_x.bin', access='stream', form='unformatted', &
        status='old', action='read')
  read (u) truth
  close (u)
  mu = sum(truth) / size(truth)
  sigma = sqrt(sum((truth - mu)**2) / size(truth))
  cap = sqrt(2.0_dp) * sigma     ! RMSE of a random draw from the climate: a lost forecast

  nsteps = nint(t_run / dt)
  nfc = min(nsteps, nint(horizon_max / dt), ntest - 1)
  stride = (ntest - 1 - nfc) / n_ic
  if (stride < 1) call fail('the test segment is too short for so many initial conditions')
  allocate(idx(n_ic))
  do m = 1, n_ic
    idx(m) = 1 + (m - 1) * stride
  end do

  allocate(traj(cfg%nk, 0:nsteps, n_ic), err2(0:nfc, n_ic), blown(n_ic), t_blow(n_ic))
  allocate(x(cfg%nk), uk(cfg%nk), inputs(width, cfg%nk), outputs(1, cfg%nk))
  traj = nan
  blown = .false.
  t_blow = t_run
  t_nn = 0
  t_rest = 0
  nstep_total = 0
  call system_clock(count_rate=rate)

  do m = 1, n_ic
    x = truth(:, idx(m))
    traj(:, 0, m) = x
    do n = 1, nsteps
      call system_clock(t0)
      call stencil(x, width, inputs)
      if (nmodels == 1) then
        call nets(1)%predict(inputs, outputs, stat=stat, errmsg=msg)
      else
        call ens%predict(inputs, outputs, stat=stat, errmsg=msg)   ! the members' mean
      end if
      if (stat /= FKB_OK) call fail(trim(msg))
      uk = outputs(1, :)
      call system_clock(t1)
      call one_scale_step(cfg, dt, x, uk)
      if (any(ieee_is_nan(x)) .or. maxval(abs(x)) > blowup) then
        blown(m) = .true.
        t_blow(m) = n * dt
      else
        traj(:, n, m) = x
      end if
      call system_clock(t2)
      t_nn = t_nn + (t1 - t0)
      t_rest = t_rest + (t2 - t1)
      nstep_total = nstep_total + 1
      if (blown(m)) exit
    end do
  end do

  ! Forecast error against the truth; a blown-up run counts as a lost forecast (cap).
  do m = 1, n_ic
    do n = 0, nfc
      if (ieee_is_nan(traj(1, n, m))) then
        err2(n, m) = cap**2
      else
        err2(n, m) = min(sum((traj(:, n, m) - truth(:, idx(m) + n))**2) / cfg%nk, cap**2)
      end if
    end do
  end do
  rmse = sqrt(sum(err2, dim=2) / n_ic)
  ! Time to divergence: the first time the error of a run exceeds the climate's sigma.
  allocate(t_div(n_ic))
  do m = 1, n_ic
    t_div(m) = nfc * dt
    do n = 0, nfc
      if (sqrt(err2(n, m)) > sigma) then
        t_div(m) = n * dt
        exit
      end if
    end do
  end do

  ! Climate: PDF and autocorrelation of X, after a spin-off, from the runs that stayed bounded.
  skip = nint(min(2.0_dp, t_run / 4) / dt)
  lagstride = nint(lag_step / dt)
  nlag = nint(lag_max / lag_step)
  allocate(edges(0:nbins), p_m(nbins), p_t(nbins), acf_m(0:nlag), acf_t(0:nlag))
  edges = [(mu - 5 * sigma + 10 * sigma * i / nbins, i = 0, nbins)]
  p_m = 0
  acf_m = nan
  nvalid = count(.not. blown)
  if (nvalid > 0 .and. nsteps - skip > nlag * lagstride) then
    call climate(reshape(traj(:, skip:nsteps, pack([(m, m = 1, n_ic)], .not. blown)), &
                         [cfg%nk, nsteps - skip + 1, nvalid]), p_m, acf_m)
  end if
  call climate(reshape(truth, [cfg%nk, ntest, 1]), p_t, acf_t)

  open (newunit=u, file=trim(prefix) // '.txt', status='replace', action='write')
  call put('n_models', real(nmodels, dp))
  call put('stencil_width', real(width, dp))
  call put('n_ic', real(n_ic, dp))
  call put('t_run', t_run)
  call put('dt', dt)
  call put('truth_mean', mu)
  call put('truth_sigma', sigma)
  do i = 1, size(leads)
    if (nint(leads(i) / dt) <= nfc) call put('rmse_lead_' // trim(lead_names(i)), &
                                             rmse(nint(leads(i) / dt)))
  end do
  call put('horizon', nfc * dt)
  call put('divergence_time_mean', sum(t_div) / n_ic)
  call put('divergence_time_min', minval(t_div))
  call put('blowup_runs', real(count(blown), dp))
  call put('time_to_blowup_mean', sum(t_blow) / n_ic)
  if (nvalid > 0 .and. .not. ieee_is_nan(acf_m(0))) then
    call put('hellinger', sqrt(max(0.0_dp, 1 - sum(sqrt(p_m * p_t)))))
    call put('acf_rmse', sqrt(sum((acf_m - acf_t)**2) / (nlag + 1)))
  else
    call put('hellinger', 1.0_dp)      ! no bounded run: the PDFs share nothing
    call put('acf_rmse', nan)
  end if
  call put('nn_us_per_step', 1e6_dp * t_nn / rate / max(1_int64, nstep_total))
  call put('rest_us_per_step', 1e6_dp * t_rest / rate / max(1_int64, nstep_total))
  call put('steps', real(nstep_total, dp))
  close (u)
  call save(trim(prefix) // '_rmse.bin', rmse)
  call save(trim(prefix) // '_traj.bin', reshape(traj(:, 0:nfc, 1), [cfg%nk * (nfc + 1)]))
  call save(trim(prefix) // '_acf.bin', [([(i * lag_step, i = 0, nlag)]), acf_m, acf_t])
  call save(trim(prefix) // '_pdf.bin', [edges, p_m, p_t])

contains

  subroutine climate(xs, pdf, acf)
    !! PDF of X (fraction of all samples per bin; samples outside the bins still count in the
    !! total) and autocorrelation of X, pooled over sites and runs: xs(K, time, run).
    real(dp), intent(in) :: xs(:, :, :)
    real(dp), intent(out) :: pdf(:), acf(0:)
    real(dp) :: xm, var, s
    integer :: b, l, nt, i, j, r
    pdf = 0
    do r = 1, size(xs, 3)
      do j = 1, size(xs, 2)
        do i = 1, size(xs, 1)
          b = floor((xs(i, j, r) - edges(0)) / (edges(nbins) - edges(0)) * nbins) + 1
          if (b >= 1 .and. b <= nbins) pdf(b) = pdf(b) + 1
        end do
      end do
    end do
    pdf = pdf / size(xs)
    xm = sum(xs) / size(xs)
    var = sum((xs - xm)**2) / size(xs)
    nt = size(xs, 2)
    do l = 0, ubound(acf, 1)
      s = 0
      do r = 1, size(xs, 3)
        s = s + sum((xs(:, 1:nt - l * lagstride, r) - xm) * (xs(:, 1 + l * lagstride:nt, r) - xm))
      end do
      acf(l) = s / (size(xs, 1) * size(xs, 3) * (nt - l * lagstride)) / var
    end do
  end subroutine climate

  real(dp) function meta_value(key)
    character(len=*), intent(in) :: key
    character(len=256) :: line
    integer :: unit, ios
    meta_value = nan
    open (newunit=unit, file=trim(datadir) // '/meta.txt', status='old', action='read')
    do
      read (unit, '(a)', iostat=ios) line
      if (ios /= 0) exit
      if (index(line, key // ' ') == 1) then
        read (line(len(key) + 2:), *) meta_value
        exit
      end if
    end do
    close (unit)
    if (ieee_is_nan(meta_value)) call fail('meta.txt has no ' // key)
  end function meta_value

  subroutine put(key, value)
    character(len=*), intent(in) :: key
    real(dp), intent(in) :: value
    write (u, '(a,1x,es24.16e3)') key, value
  end subroutine put

  subroutine save(path, a)
    character(len=*), intent(in) :: path
    real(dp), intent(in) :: a(:)
    integer :: unit
    open (newunit=unit, file=path, access='stream', form='unformatted', status='replace', &
          action='write')
    write (unit) a
    close (unit)
  end subroutine save

  subroutine fail(text)
    character(len=*), intent(in) :: text
    print '(a)', 'l96_online: ' // text
    error stop 1
  end subroutine fail

end program l96_online
