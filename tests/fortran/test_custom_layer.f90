!! A layer type defined outside FKB (examples/custom_layer/scale_shift.f90), registered at run
!! time: a file using it loads, predicts y = a x + offset exactly, saves and reloads, and
!! trains (gradients = finite differences); unregistered or badly named types are refused.
program test_custom_layer
  use iso_fortran_env, only: real64, int64
  use fkb
  use fkb_testing, only: check, finish, write_fkb
  use scale_shift_layer, only: scale_shift
  implicit none
  character, parameter :: nl = new_line('a')
  character(len=1024) :: scratch
  character(len=:), allocatable :: path, header
  type(fkb_network) :: net, back
  type(scale_shift) :: mold
  real(real64) :: x(3, 4), y(3, 4), g(3), l, lp, lm, offset(3)
  integer :: stat, i
  character(len=512) :: msg

  call get_command_argument(1, scratch)
  path = trim(scratch) // '/custom.fkb'
  header = 'fkb-model' // nl // 'dtype float64' // nl // 'input 3' // nl // &
           'layer scale_shift name=ss a=2.0' // nl // 'tensor offset float64 3' // nl // 'end' // nl
  call write_fkb(path, header, 3 * 8)

  msg = ''
  call net%load(path, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, "'scale_shift'") > 0, &
             'unregistered type refused by name: ' // trim(msg))
  call fkb_register_layer('dense', mold, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'built-in') > 0, 'built-in names reserved')
  call fkb_register_layer('Bad Name', mold, stat=stat, errmsg=msg)
  call check(stat == FKB_ERR_ARGUMENT, 'bad names refused')
  call fkb_register_layer('scale_shift', mold, stat=stat)
  call check(stat == FKB_OK, 'register')
  call net%load(path, stat=stat, errmsg=msg)
  call check(stat == FKB_OK, 'load with the registered type: ' // trim(msg))
  call net%get_tensor(1_int64, offset)
  x = reshape([(0.5_real64 * i, i=1, 12)], [3, 4])
  call net%predict(x, y)
  call check(all(y == 2 * x + spread(offset, 2, 4)), 'y = a x + offset')
  call net%save(trim(scratch) // '/custom2.fkb', stat=stat)
  call back%load(trim(scratch) // '/custom2.fkb', stat=stat, errmsg=msg)
  call check(stat == FKB_OK .and. back%description() == net%description(), 'save and reload')
  ! Training through the user's backward: d loss / d offset against central differences.
  call net%compile('sgd', 'mse')
  call net%gradients(x, 0 * y, l, g)
  do i = 1, 3
    offset(i) = offset(i) + 1e-6_real64
    call net%set_tensor(1_int64, offset)
    call net%evaluate(x, 0 * y, lp)
    offset(i) = offset(i) - 2e-6_real64
    call net%set_tensor(1_int64, offset)
    call net%evaluate(x, 0 * y, lm)
    offset(i) = offset(i) + 1e-6_real64
    call net%set_tensor(1_int64, offset)
    call check(abs((lp - lm) / 2e-6_real64 - g(i)) <= 1e-6_real64 * max(1.0_real64, abs(g(i))), &
               'custom layer gradient = finite difference')
  end do
  call finish()
end program test_custom_layer
