! Registers the user's layer type and loads a model that uses it. Usage: custom_layer MODEL.fkb
! (a model whose header names `scale_shift` layers; see scale_shift.f90).
program custom_layer
  use iso_fortran_env, only: real64
  use fkb
  use scale_shift_layer, only: scale_shift
  implicit none
  type(fkb_network) :: net
  type(scale_shift) :: mold
  character(len=1024) :: path
  character(len=512) :: msg
  real(real64), allocatable :: x(:, :), y(:, :)
  integer :: stat

  call fkb_register_layer('scale_shift', mold, stat=stat, errmsg=msg)   ! before loading
  if (stat /= FKB_OK) error stop 'register failed'
  call get_command_argument(1, path)
  msg = ''
  call net%load(trim(path), stat=stat, errmsg=msg)
  if (stat /= FKB_OK) then
    print '(a)', trim(msg)
    error stop 1
  end if
  allocate(x(net%n_inputs(), 3), y(net%n_outputs(), 3))
  x = 1
  call net%predict(x, y)
  print '(a,*(f8.3))', 'outputs of the first sample:', y(:, 1)
  print '(a)', net%description()
end program custom_layer
