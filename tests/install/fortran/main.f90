! A host program using the installed FKB: loads CASE.fkb, runs CASE.x.bin, compares with the
! Keras outputs in CASE.y.bin: |a-b| <= RTOL*max(1,|b|). Usage: consumer CASE RTOL
program consumer
  use iso_fortran_env, only: real64
  use fkb
  implicit none
  type(fkb_network) :: net
  character(len=1024) :: case
  character(len=512) :: msg, arg
  real(real64) :: rtol
  real(real64), allocatable :: x(:, :), y(:, :), ref(:, :)
  integer :: stat, u
  integer, parameter :: n = 1024
  call get_command_argument(1, case)
  call get_command_argument(2, arg)
  read (arg, *) rtol
  msg = ''
  call net%load(trim(case) // '.fkb', stat=stat, errmsg=msg)
  if (stat /= FKB_OK) error stop 'load failed'
  allocate(x(net%n_inputs(), n), y(net%n_outputs(), n), ref(net%n_outputs(), n))
  open (newunit=u, file=trim(case) // '.x.bin', access='stream', form='unformatted')
  read (u) x
  close (u)
  open (newunit=u, file=trim(case) // '.y.bin', access='stream', form='unformatted')
  read (u) ref
  close (u)
  call net%predict(x, y, stat=stat)
  if (stat /= FKB_OK) error stop 'predict failed'
  print '(a,es10.3)', 'fortran consumer: max |fkb - keras| / max(1,|keras|) = ', &
    maxval(abs(y - ref) / max(1.0_real64, abs(ref)))
  if (.not. all(abs(y - ref) <= rtol * max(1.0_real64, abs(ref)))) error stop 'mismatch'  ! NaN fails
end program consumer
