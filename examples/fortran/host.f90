! A host model's use of FKB: load a converted Keras model once, then run a whole batch of
! columns per time step. Usage: fkb_host MODEL.fkb [INPUTS.bin REFERENCE.bin N]
! With the optional files (float64, C order (N, n_in) and (N, n_out)) it also reports the
! agreement with the reference (e.g. Keras) outputs.
program fkb_host
  use iso_fortran_env, only: real64, int64
  use fkb
  implicit none
  type(fkb_network) :: net
  character(len=1024) :: model, xfile, yfile, arg
  character(len=512) :: msg
  real(real64), allocatable :: x(:, :), y(:, :), ref(:, :)
  integer :: stat, u, n, step
  integer(int64) :: t0, t1, rate

  call get_command_argument(1, model)
  msg = ''
  call net%load(trim(model), stat=stat, errmsg=msg)
  if (stat /= FKB_OK) then
    print '(a)', 'fkb_host: ' // trim(msg)
    error stop 1
  end if
  print '(a,i0,a,i0,a)', 'loaded ' // trim(model) // ': ', net%n_inputs(), ' inputs -> ', &
    net%n_outputs(), ' outputs'

  if (command_argument_count() < 4) then
    n = 8
    allocate(x(net%n_inputs(), n), y(net%n_outputs(), n))
    call random_number(x)
  else
    call get_command_argument(2, xfile)
    call get_command_argument(3, yfile)
    call get_command_argument(4, arg)
    read (arg, *) n
    allocate(x(net%n_inputs(), n), y(net%n_outputs(), n), ref(net%n_outputs(), n))
    open (newunit=u, file=trim(xfile), access='stream', form='unformatted', status='old')
    read (u) x
    close (u)
    open (newunit=u, file=trim(yfile), access='stream', form='unformatted', status='old')
    read (u) ref
    close (u)
  end if

  ! The "time loop": one batched call per step for all columns.
  call system_clock(t0, rate)
  do step = 1, 100
    call net%predict(x, y, stat=stat, errmsg=msg)
    if (stat /= FKB_OK) then
      print '(a)', 'fkb_host: ' // trim(msg)
      error stop 1
    end if
  end do
  call system_clock(t1)
  print '(a,i0,a,f10.2,a)', 'batch of ', n, ' columns: ', &
    1e6_real64 * real(t1 - t0, real64) / rate / 100 / n, ' us per column'
  if (allocated(ref)) then
    print '(a,es10.3)', 'max |fkb - keras| / max(1, |keras|) = ', &
      maxval(abs(y - ref) / max(1.0_real64, abs(ref)))
    if (.not. all(abs(y - ref) <= 1e-5_real64 * max(1.0_real64, abs(ref)))) then
      print '(a)', 'DISAGREES with the reference beyond the float32 tolerance 1e-5'
      error stop 1
    end if
    print '(a)', 'agrees with Keras within the float32 tolerance |a-b| <= 1e-5*max(1,|b|)'
  end if
end program fkb_host
