! Online learning inside a host model's time loop: at every step the "host" produces a batch
! of columns (inputs) and the target the network should learn (here a smooth function of the
! inputs standing in for, e.g., a subgrid tendency diagnosed from a high-resolution run);
! FKB takes one optimizer step on it, and the network is saved with its optimizer state so a
! restarted run continues exactly where this one stopped.
!
! Usage: fkb_online MODEL.fkb [STEPS] [OUT.fkb]
program fkb_online
  use iso_fortran_env, only: real64, int64
  use fkb
  implicit none
  type(fkb_network) :: net
  character(len=1024) :: model, arg, out
  character(len=512) :: msg
  real(real64), allocatable :: x(:, :), y(:, :)
  real(real64) :: loss, first, recent
  integer :: stat, steps, step, ncol
  integer(int64) :: n_in, n_out

  call get_command_argument(1, model)
  steps = 200
  if (command_argument_count() >= 2) then
    call get_command_argument(2, arg)
    read (arg, *) steps
  end if
  out = 'online_trained.fkb'
  if (command_argument_count() >= 3) call get_command_argument(3, out)

  msg = ''
  call net%load(trim(model), stat=stat, errmsg=msg)
  if (stat /= FKB_OK) call fail('load')
  ! Keras' names and arguments; the optimizer state lives in the network from now on.
  call net%compile('adam learning_rate=0.001', 'mean_squared_error', stat=stat, errmsg=msg)
  if (stat /= FKB_OK) call fail('compile')
  n_in = net%n_inputs()
  n_out = net%n_outputs()
  ncol = 64
  allocate(x(n_in, ncol), y(n_out, ncol))

  do step = 1, steps
    call host_step(step, x, y)                       ! the host model advances
    call net%train_on_batch(x, y, loss, stat=stat, errmsg=msg)
    if (stat /= FKB_OK) call fail('train_on_batch')
    if (step == 1) first = loss
    if (step == 1 .or. mod(step, max(1, steps / 5)) == 0) &
      print '(a,i6,a,es12.4)', 'step', step, '  loss', loss
  end do
  recent = loss
  call net%save(trim(out), stat=stat, errmsg=msg)    ! weights + optimizer state
  if (stat /= FKB_OK) call fail('save')
  print '(a,i0,a,es10.3,a,es10.3,a)', 'trained ', net%iterations(), ' steps: loss ', first, &
    ' -> ', recent, '; saved ' // trim(out)
  if (.not. recent < first) then
    print '(a)', 'the loss did not decrease'
    error stop 1
  end if

contains

  subroutine host_step(step, x, y)
    ! A stand-in for the host: columns whose state drifts with time, and the target.
    integer, intent(in) :: step
    real(real64), intent(out) :: x(:, :), y(:, :)
    integer :: i, j
    do j = 1, size(x, 2)
      do i = 1, size(x, 1)
        x(i, j) = sin(0.37_real64 * i + 0.11_real64 * j + 0.05_real64 * step)
      end do
      do i = 1, size(y, 1)
        y(i, j) = 0.5_real64 * tanh(x(1 + mod(i - 1, size(x, 1)), j) + &
                                    0.3_real64 * x(1 + mod(i, size(x, 1)), j))
      end do
    end do
  end subroutine host_step

  subroutine fail(what)
    character(len=*), intent(in) :: what
    print '(a)', 'fkb_online: ' // what // ': ' // trim(msg)
    error stop 1
  end subroutine fail

end program fkb_online
