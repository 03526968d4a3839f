!! One network, many OpenMP threads: thousands of predict calls of mixed batch sizes at once,
!! each compared bit for bit with the serial result for the same batch.
program test_threads
  use iso_fortran_env, only: real32, real64, int64
  use fkb
  use fkb_testing, only: check, finish, read_f64, case_t, read_cases
  use omp_lib, only: omp_set_num_threads
  implicit none
  character(len=1024) :: dir
  character(len=*), parameter :: NAMES(2) = [character(len=40) :: &
                                 'spcam_like_float32', 'layer_normalization_float64']
  integer :: c

  call get_command_argument(1, dir)
  do c = 1, size(NAMES)
    call run(trim(NAMES(c)))
  end do
  call finish()

contains

  subroutine run(name)
    character(len=*), intent(in) :: name
    type(fkb_network) :: net
    type(case_t), allocatable :: cases(:)
    real(real64), allocatable :: x(:, :), serial(:, :, :)
    integer, parameter :: SIZES(6) = [1, 2, 7, 33, 128, 300]
    integer :: i, k, stat, bad, n_in, n_out, idx
    idx = 0
    call read_cases(trim(dir), cases)
    do i = 1, size(cases)
      if (cases(i)%name == name) idx = i
    end do
    call check(idx > 0, name // ' is among the cases')
    if (idx == 0) return
    n_in = int(cases(idx)%n_in)
    n_out = int(cases(idx)%n_out)
    allocate(x(n_in, cases(idx)%n), serial(n_out, 300, size(SIZES)))
    call read_f64(trim(dir) // '/' // name // '.x.bin', x)
    call net%load(trim(dir) // '/' // name // '.fkb', stat=stat)
    call check(stat == FKB_OK, name // ': load')
    if (stat /= FKB_OK) return
    do k = 1, size(SIZES)
      call net%predict(x(:, 1:SIZES(k)), serial(:, 1:SIZES(k), k))
    end do
    bad = 0
    call omp_set_num_threads(8)
    !$omp parallel do schedule(dynamic) reduction(+:bad) private(k)
    do i = 1, 4000
      k = 1 + mod(i * 7, size(SIZES))
      bad = bad + mismatch(net, x(:, 1:SIZES(k)), serial(:, 1:SIZES(k), k))
    end do
    !$omp end parallel do
    call check(bad == 0, name // ': 4000 concurrent calls on 8 threads equal the serial results')
  end subroutine run

  integer function mismatch(net, x, expected)
    type(fkb_network), intent(inout) :: net
    real(real64), intent(in) :: x(:, :), expected(:, :)
    real(real64) :: y(size(expected, 1), size(expected, 2))
    integer :: stat
    call net%predict(x, y, stat=stat)
    mismatch = merge(0, 1, stat == FKB_OK .and. all(y == expected))
  end function mismatch

end program test_threads
