!! Ensembles: statistics against the members' own predictions (computed here with numpy-like
!! loops over separately loaded networks), noise that gives the same bits on 1, 2 and 8
!! threads and never NaN, loading from a list, a folder and a manifest, and every bad input.
program test_ensemble
  use iso_fortran_env, only: real64, int64
  use fkb
  use fkb_testing, only: check, finish, read_f64
  use omp_lib, only: omp_set_num_threads
  implicit none
  character(len=1024) :: dir, scratch
  character(len=*), parameter :: M1 = 'dense_relu_float32', M2 = 'dense_tanh_float64', &
                                 M3 = 'dense_gelu_float32', WIDE = 'spcam_like_float32'
  integer, parameter :: N = 64, N_IN = 7, N_OUT = 5
  character(len=1024) :: paths(3)
  real(real64) :: x(N_IN, N), mean(N_OUT, N), std(N_OUT, N), lo(N_OUT, N), hi(N_OUT, N)
  real(real64) :: each(N_OUT, N, 3), ref_mean(N_OUT, N), ref_std(N_OUT, N), w(3)
  real(real64) :: members(N_OUT, N, 3), first(N_OUT, N), again(N_OUT, N)
  real(real64), allocatable :: xall(:, :)
  type(fkb_ensemble) :: ens
  type(fkb_network) :: net
  integer :: i, stat, threads
  character(len=1024) :: msg

  call get_command_argument(1, dir)
  call get_command_argument(2, scratch)
  paths = [character(len=1024) :: trim(dir) // '/' // M1 // '.fkb', &
           trim(dir) // '/' // M2 // '.fkb', trim(dir) // '/' // M3 // '.fkb']
  allocate(xall(N_IN, 1024))
  call read_f64(trim(dir) // '/' // M1 // '.x.bin', xall)
  x = xall(:, 1:N)

  ! Reference: each member alone, then weighted mean and population std.
  do i = 1, 3
    call net%load(trim(paths(i)))
    call net%predict(x, each(:, :, i))
  end do
  w = [1.0_real64, 2.0_real64, 1.0_real64] / 4
  ref_mean = w(1) * each(:, :, 1) + w(2) * each(:, :, 2) + w(3) * each(:, :, 3)
  ref_std = sqrt(w(1) * (each(:, :, 1) - ref_mean)**2 + w(2) * (each(:, :, 2) - ref_mean)**2 &
                 + w(3) * (each(:, :, 3) - ref_mean)**2)

  msg = ''
  call ens%load(paths, stat=stat, errmsg=msg, weights=[1.0_real64, 2.0_real64, 1.0_real64])
  call check(stat == FKB_OK, 'load three members: ' // trim(msg))
  call check(ens%n_members() == 3 .and. ens%n_inputs() == N_IN .and. ens%n_outputs() == N_OUT, &
             'sizes')
  call ens%predict(x, mean, stat=stat, std=std, minimum=lo, maximum=hi, members=members)
  call check(stat == FKB_OK, 'predict with every statistic')
  call check(all(abs(mean - ref_mean) <= 1e-12_real64 * max(1.0_real64, abs(ref_mean))), &
             'weighted mean = mean of the members')
  call check(all(abs(std - ref_std) <= 1e-12_real64 * max(1.0_real64, abs(ref_std))), &
             'weighted std = std of the members')
  call check(all(lo == min(each(:, :, 1), each(:, :, 2), each(:, :, 3))) .and. &
             all(hi == max(each(:, :, 1), each(:, :, 2), each(:, :, 3))), 'minimum and maximum')
  call check(all(members == each), 'every member output')

  ! Noise: same seed, same bits on 1, 2, 8 threads; another seed differs; std grows.
  call ens%set_noise([0.1_real64], 4, 42_int64, stat=stat)
  call check(stat == FKB_OK, 'set scalar noise')
  call omp_set_num_threads(1)
  call ens%predict(x, first, std=std)
  call check(any(first /= ref_mean), 'noise changes the mean')
  do threads = 2, 8, 6
    call omp_set_num_threads(threads)
    call ens%predict(x, again)
    call check(all(again == first), 'same seed, same bits on more threads')
  end do
  call ens%set_noise([0.1_real64], 4, 43_int64)
  call ens%predict(x, again)
  call check(any(again /= first), 'another seed, other bits')
  call ens%set_noise([(0.01_real64 * i, i=1, N_IN)], 2, 1_int64, stat=stat)
  call check(stat == FKB_OK, 'per-feature noise')
  call no_nan_in_a_million()

  ! Loading from a folder and a manifest.
  call write_manifest()
  call ens%load_manifest(trim(scratch) // '/ens/manifest.txt', stat=stat, errmsg=msg)
  call check(stat == FKB_OK .and. ens%n_members() == 3, 'manifest: ' // trim(msg))
  call ens%predict(x, mean)
  call check(all(abs(mean - ref_mean) <= 1e-12_real64 * max(1.0_real64, abs(ref_mean))), &
             'manifest weights are used')
  call ens%load_directory(trim(scratch) // '/ens', stat=stat, errmsg=msg)
  call check(stat == FKB_OK .and. ens%n_members() == 2, 'folder: its two .fkb files: ' // &
             trim(msg))

  ! Bad input: each refused with its message, the loaded ensemble kept.
  call expect(FKB_ERR_ARGUMENT, 'at least one member', empty=.true.)
  call expect(FKB_ERR_IO, 'no_such_member.fkb', extra='/no_such_member.fkb')
  call expect(FKB_ERR_SHAPE, 'maps 94 -> 65', extra=WIDE)
  call expect(FKB_ERR_UNSUPPORTED, 'several inputs or outputs', extra='merge_graph_float64')
  call expect(FKB_ERR_ARGUMENT, 'weights must be', weights=[1.0_real64, -1.0_real64])
  call expect(FKB_ERR_ARGUMENT, 'weights must be', weights=[0.0_real64, 0.0_real64])
  call check(ens%n_members() == 2, 'failed loads leave the ensemble as it was')
  call ens%set_noise([-1.0_real64], 1, 0_int64, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_ARGUMENT, 'negative noise refused')
  call ens%set_noise([ieee_nan()], 1, 0_int64, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_ARGUMENT, 'NaN noise refused')
  call ens%set_noise([0.1_real64], 0, 0_int64, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'copies') > 0, 'copies <= 0 refused')
  call ens%set_noise([0.1_real64, 0.2_real64], 1, 0_int64, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_SHAPE, 'noise of the wrong length refused')
  call ens%load_directory(trim(scratch) // '/no_such_folder', stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_IO, 'missing folder')
  call ens%predict(x(1:3, :), mean, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_SHAPE, 'wrong input width')
  call finish()

contains

  subroutine expect(code, text, empty, extra, weights)
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    logical, intent(in), optional :: empty
    character(len=*), intent(in), optional :: extra
    real(real64), intent(in), optional :: weights(:)
    character(len=1024) :: list(2), m
    integer :: st
    list(1) = paths(1)
    list(2) = paths(2)
    if (present(extra)) then
      if (extra(1:1) == '/') then
        list(2) = trim(scratch) // extra
      else
        list(2) = trim(dir) // '/' // extra // '.fkb'
      end if
    end if
    m = ''
    if (present(empty)) then
      call ens%load(list(1:0), stat=st, errmsg=m)
    else if (present(weights)) then
      call ens%load(list, stat=st, errmsg=m, weights=weights)
    else
      call ens%load(list, stat=st, errmsg=m)
    end if
    call check(st == code .and. index(m, text) > 0, "expected '" // text // "', got: " // trim(m))
  end subroutine expect

  subroutine no_nan_in_a_million()
    ! 10^6 noisy samples (1000 calls of 1000 samples) of finite input: no NaN, no infinity.
    real(real64) :: xb(N_IN, 1000), yb(N_OUT, 1000)
    integer :: call_no, bad
    call ens%set_noise([1.0_real64], 1, 7_int64)
    call omp_set_num_threads(2)
    bad = 0
    do call_no = 1, 1000
      xb = spread(x(:, mod(call_no, N) + 1), 2, 1000)
      call ens%predict(xb, yb)
      if (.not. all(abs(yb) <= huge(1.0_real64))) bad = bad + 1
    end do
    call check(bad == 0, 'no NaN or infinity in 10^6 noisy samples')
  end subroutine no_nan_in_a_million

  subroutine write_manifest()
    integer :: u
    call execute_command_line('mkdir -p ' // trim(scratch) // '/ens')
    call execute_command_line('cp ' // trim(paths(1)) // ' ' // trim(paths(2)) // ' ' // &
                              trim(scratch) // '/ens/')
    open (newunit=u, file=trim(scratch) // '/ens/manifest.txt', status='replace')
    write (u, '(a)') '# three members, relative and absolute paths'
    write (u, '(a)') M1 // '.fkb 1'
    write (u, '(a)') M2 // '.fkb   2.0   # heavier'
    write (u, '(a)') trim(paths(3))
    close (u)
  end subroutine write_manifest

  real(real64) function ieee_nan()
    use, intrinsic :: ieee_arithmetic, only: ieee_value, ieee_quiet_nan
    ieee_nan = ieee_value(1.0_real64, ieee_quiet_nan)
  end function ieee_nan

end program test_ensemble
