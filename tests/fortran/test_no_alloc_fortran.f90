!! A steady-state predict from Fortran allocates nothing: after a warm-up call of the same
!! batch size, 100 more calls of each form (2-d and 1-d host arrays, real32 and real64, with
!! stat and errmsg as a host passes them) make no call to the allocator. The count comes from
!! the counting malloc & co. that tests/c/alloc_counter.c puts into this executable.
program test_no_alloc_fortran
  use iso_fortran_env, only: real32, real64, int64
  use iso_c_binding, only: c_int, c_long
  use fkb
  use fkb_testing, only: check, finish
  implicit none
  interface
    integer(c_int) function alloc_supported() bind(C, name='fkb_test_alloc_supported')
      import :: c_int
    end function alloc_supported
    subroutine alloc_start() bind(C, name='fkb_test_alloc_start')
    end subroutine alloc_start
    integer(c_long) function alloc_stop() bind(C, name='fkb_test_alloc_stop')
      import :: c_long
    end function alloc_stop
  end interface
  character(len=1024) :: dir
  type(fkb_network) :: probe
  integer(c_long) :: n
  integer :: st

  call get_command_argument(1, dir)
  if (alloc_supported() == 0) then
    print '(a)', 'skipped: the allocator hook needs glibc'
    stop 77
  end if
  ! the hook must see the library's allocations, or a zero below proves nothing
  call alloc_start()
  call probe%load(trim(dir) // '/spcam_like_float32.fkb', stat=st)
  n = alloc_stop()
  call check(st == FKB_OK .and. n > 0, 'the allocator hook sees the calls of a load')
  call run('spcam_like_float32', 1)
  call run('spcam_like_float32', 333)
  call run('spcam_like_float64', 1)
  call run('spcam_like_float64', 333)
  call run('layer_normalization_float32', 7)
  call finish()

contains

  subroutine run(name, batch)
    character(len=*), intent(in) :: name
    integer, intent(in) :: batch
    type(fkb_network) :: net
    real(real32), allocatable :: x32(:, :), y32(:, :)
    real(real64), allocatable :: x64(:, :), y64(:, :)
    integer :: st, i, n_in, n_out
    logical :: ok
    integer(c_long) :: calls
    character(len=20) :: label
    call net%load(trim(dir) // '/' // name // '.fkb', stat=st)
    call check(st == FKB_OK, name // ' loads')
    if (st /= FKB_OK) return
    n_in = int(net%n_inputs())
    n_out = int(net%n_outputs())
    allocate(x32(n_in, batch), y32(n_out, batch), x64(n_in, batch), y64(n_out, batch))
    x32 = 0.25
    x64 = 0.25d0
    ok = .true.
    call all_forms(net, x32, y32, x64, y64, ok)   ! warm-up: sizes the workspace once
    call alloc_start()
    do i = 1, 100
      call all_forms(net, x32, y32, x64, y64, ok)
    end do
    calls = alloc_stop()
    write (label, '(a,i0)') ' batch ', batch
    call check(ok, name // trim(label) // ': every predict succeeds')
    if (calls /= 0) print '(a,i0,a)', '  (', calls, ' allocator calls)'
    call check(calls == 0, name // trim(label) // ': no allocator call in steady state')
  end subroutine run

  subroutine all_forms(net, x32, y32, x64, y64, ok)
    !! Each form of predict once (the 1-d forms when the batch is one sample).
    type(fkb_network), intent(inout) :: net
    real(real32), intent(in) :: x32(:, :)
    real(real32), intent(inout) :: y32(:, :)
    real(real64), intent(in) :: x64(:, :)
    real(real64), intent(inout) :: y64(:, :)
    logical, intent(inout) :: ok
    character(len=200) :: errmsg
    integer :: st
    call net%predict(x32, y32, stat=st, errmsg=errmsg)
    ok = ok .and. st == FKB_OK
    call net%predict(x64, y64, stat=st, errmsg=errmsg)
    ok = ok .and. st == FKB_OK
    if (size(x32, 2) == 1) then
      call net%predict(x32(:, 1), y32(:, 1), stat=st, errmsg=errmsg)
      ok = ok .and. st == FKB_OK
      call net%predict(x64(:, 1), y64(:, 1), stat=st, errmsg=errmsg)
      ok = ok .and. st == FKB_OK
    end if
  end subroutine all_forms
end program test_no_alloc_fortran
