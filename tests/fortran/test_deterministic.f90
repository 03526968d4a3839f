!! Deterministic mode: one sample's output has the same bits whether it is computed alone, in
!! a batch of any size, at any position of the batch, or on any number of threads.
program test_deterministic
  use iso_fortran_env, only: real32, real64, int64
  use fkb
  use fkb_testing, only: check, finish, read_f64, case_t, read_cases
  use omp_lib, only: omp_set_num_threads
  implicit none
  character(len=1024) :: dir
  character(len=*), parameter :: NAMES(6) = [character(len=40) :: 'spcam_like_float32', &
                                 'spcam_like_float64', 'layer_normalization_float32', &
                                 'dense_tanh_float64', 'dense_sigmoid_float32', &
                                 'softmax_layer_float64']
  integer :: c

  call get_command_argument(1, dir)
  call fkb_set_deterministic(.true.)
  call check(fkb_is_deterministic(), 'mode switched on')
  do c = 1, size(NAMES)
    call run(trim(NAMES(c)))
  end do
  call finish()

contains

  subroutine run(name)
    character(len=*), intent(in) :: name
    type(fkb_network) :: net
    type(case_t), allocatable :: cases(:)
    real(real64), allocatable :: x(:, :), whole(:, :), part(:, :)
    integer, parameter :: SPLITS(5) = [1, 3, 7, 64, 333]
    integer :: i, k, j0, j1, idx, threads
    idx = 0
    call read_cases(trim(dir), cases)
    do i = 1, size(cases)
      if (cases(i)%name == name) idx = i
    end do
    call check(idx > 0, name // ' is among the cases')
    if (idx == 0) return
    allocate(x(cases(idx)%n_in, cases(idx)%n), whole(cases(idx)%n_out, cases(idx)%n))
    allocate(part(cases(idx)%n_out, cases(idx)%n))
    call read_f64(trim(dir) // '/' // name // '.x.bin', x)
    call net%load(trim(dir) // '/' // name // '.fkb')
    call omp_set_num_threads(1)
    call net%predict(x, whole)
    ! The same samples in chunks of several sizes, on 1, 2 and 8 threads.
    do threads = 1, 8
      if (threads /= 1 .and. threads /= 2 .and. threads /= 8) cycle
      call omp_set_num_threads(threads)
      do k = 1, size(SPLITS)
        part = -1
        do j0 = 1, int(cases(idx)%n), SPLITS(k)
          j1 = min(int(cases(idx)%n), j0 + SPLITS(k) - 1)
          call net%predict(x(:, j0:j1), part(:, j0:j1))
        end do
        call check(all(part == whole), name // ': split into chunks of ' // itoa(SPLITS(k)) &
                   // ' on ' // itoa(threads) // ' threads')
      end do
      ! Concurrent calls, each on a different chunk.
      part = -1
      !$omp parallel do schedule(dynamic)
      do j0 = 1, int(cases(idx)%n), 5
        call net%predict(x(:, j0:min(j0 + 4, int(cases(idx)%n))), &
                         part(:, j0:min(j0 + 4, int(cases(idx)%n))))
      end do
      !$omp end parallel do
      call check(all(part == whole), name // ': concurrent chunks on ' // itoa(threads) // &
                 ' threads')
    end do
  end subroutine run

  function itoa(i) result(s)
    integer, intent(in) :: i
    character(len=:), allocatable :: s
    character(len=12) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

end program test_deterministic
