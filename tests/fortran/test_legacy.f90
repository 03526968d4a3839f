!! Legacy FKB text files beyond their outputs (which test_keras_cases checks against numpy):
!! a file without weight lines gets Glorot-uniform kernels and zero biases, and a legacy model
!! written back in legacy format reads back with the same tensors.
program test_legacy
  use iso_fortran_env, only: real64, int64
  use fkb
  use fkb_testing, only: check, finish
  implicit none
  character(len=1024) :: legacy_dir, scratch
  type(fkb_network) :: net, back
  real(real64), allocatable :: v(:), w(:)
  real(real64) :: x(5), y(2)
  integer :: stat
  integer(int64) :: i
  character(len=512) :: msg

  call get_command_argument(1, legacy_dir)
  call get_command_argument(2, scratch)

  msg = ''
  call net%load(trim(legacy_dir) // '/simple_model.txt', stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'load file without weights: ' // trim(msg))
  call check(net%metadata('weights') == 'initialised', 'marked as initialised')
  call check(net%n_inputs() == 5 .and. net%n_outputs() == 2, 'widths 5 -> 2')
  call check(net%n_tensors() == 8, 'kernel and bias for 4 dense layers')
  ! Kernels (odd tensors) within the Glorot limit and not all zero; biases zero.
  do i = 1, net%n_tensors()
    allocate(v(net%tensor_size(i)))
    call net%get_tensor(i, v)
    if (mod(i, 2_int64) == 1) then
      call check(maxval(abs(v)) <= glorot_limit(i) .and. maxval(abs(v)) > 0, 'Glorot kernel')
    else
      call check(all(v == 0), 'zero bias')
    end if
    deallocate(v)
  end do
  x = [1, 2, 3, 4, 5]
  call net%predict(x, y, stat=stat)
  call check(stat == FKB_OK .and. all(abs(y) < huge(1.0)), 'initialised model predicts')

  call net%load(trim(legacy_dir) // '/simple_model_with_weights.txt', stat=stat)
  call check(stat == FKB_OK, 'load file with weights')
  call check(net%metadata('learning_rate') /= '', 'learning rate kept as metadata')
  call net%save(trim(scratch) // '/legacy_back.txt', stat=stat, errmsg=msg, format='legacy')
  call check(stat == FKB_OK, 'write legacy: ' // trim(msg))
  call back%load(trim(scratch) // '/legacy_back.txt', stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'read back: ' // trim(msg))
  call check(back%description() == net%description(), 'same architecture after legacy round trip')
  do i = 1, net%n_tensors()
    allocate(v(net%tensor_size(i)), w(back%tensor_size(i)))
    call net%get_tensor(i, v)
    call back%get_tensor(i, w)
    call check(all(v == w), 'same tensor after legacy round trip')
    deallocate(v, w)
  end do
  call finish()

contains

  real(real64) function glorot_limit(i)
    integer(int64), intent(in) :: i
    integer, parameter :: dims(5) = [5, 3, 4, 3, 2]
    integer :: k
    k = int((i + 1) / 2)
    glorot_limit = sqrt(6.0_real64 / (dims(k) + dims(k + 1)))
  end function glorot_limit

end program test_legacy
