!! Monte-Carlo dropout: with a seed, Dropout layers drop a fraction `rate` of the values and
!! scale the rest by 1/(1-rate), the same seed gives the same masks and another seed others;
!! without a seed the network is deterministic. An ensemble of such passes has spread.
program test_mc_dropout
  use iso_fortran_env, only: real64, int64
  use fkb
  use fkb_testing, only: check, finish, write_fkb
  use omp_lib, only: omp_set_num_threads
  implicit none
  character(len=1024) :: scratch
  character, parameter :: nl = new_line('a')
  integer, parameter :: W = 1000, N = 100
  type(fkb_network) :: net
  type(fkb_ensemble) :: ens
  real(real64) :: x(W, N), y(W, N), y2(W, N), mean(W, N), std(W, N), again(W, N)
  real(real64) :: dropped
  integer :: stat, i
  character(len=:), allocatable :: path

  call get_command_argument(1, scratch)
  path = trim(scratch) // '/dropout_only.fkb'
  call write_fkb(path, 'fkb-model' // nl // 'dtype float64' // nl // 'input 1000' // nl // &
                 'layer dropout name=drop rate=0.25' // nl // 'end' // nl, 0)
  call net%load(path, stat=stat)
  call check(stat == FKB_OK, 'load a Dropout-only model')
  x = reshape([(1 + mod(i, 7), i=1, W * N)], [W, N])

  call net%predict(x, y)
  call check(all(y == x), 'without a seed Dropout is the identity')
  call net%predict(x, y, dropout_seed=5_int64)
  dropped = count(y == 0) / real(W * N, real64)
  call check(abs(dropped - 0.25_real64) < 0.01_real64, 'about a quarter dropped')
  call check(all(y == 0 .or. y == x * (1 / 0.75_real64)), 'kept values scaled by 1/(1-rate)')
  call check(abs(sum(y) / sum(x) - 1) < 0.01_real64, 'unbiased on average')
  call net%predict(x, y2, dropout_seed=5_int64)
  call check(all(y2 == y), 'same seed, same mask')
  call net%predict(x, y2, dropout_seed=6_int64)
  call check(any(y2 /= y), 'another seed, another mask')

  call ens%load([path], stat=stat)
  call ens%set_mc_dropout(.true., 8, 3_int64, stat=stat)
  call check(stat == FKB_OK, 'switch MC dropout on')
  call omp_set_num_threads(1)
  call ens%predict(x, mean, std=std)
  call check(all(std >= 0) .and. count(std > 0) > W * N / 2, 'MC passes have spread')
  call omp_set_num_threads(4)
  call ens%predict(x, again)
  call check(all(again == mean), 'MC dropout: same bits on 1 and 4 threads')
  call ens%set_mc_dropout(.true., 0, 3_int64, stat=stat)
  call check(stat == FKB_ERR_ARGUMENT, 'copies 0 refused')
  call finish()
end program test_mc_dropout
