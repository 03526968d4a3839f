!! Keras models with a layer class of their own, converted by the Python converter through
!! fkb.register_layer (tests/data/make_custom_cases.py: ScaleShift -> `layer scale_shift a=...`
!! + `tensor offset`), run here with the Fortran layer of examples/custom_layer/scale_shift.f90
!! registered under the same name: the engine agrees with Keras at batch 1, 7 and 256 within
!! |a-b| <= rtol*max(1,|b|) (rtol 1e-5 float32, 1e-12 float64), with host arrays of the model's
!! precision and real64; a save -> load round trip gives the same bits. Without the
!! registration the files are refused naming the type.
program test_custom_keras
  use iso_fortran_env, only: real32, real64, int64, output_unit
  use fkb
  use fkb_testing, only: check, finish, read_f64
  use scale_shift_layer, only: scale_shift
  implicit none
  character(len=1024) :: dir, scratch
  character(len=256) :: name, dtype
  integer :: u, ios, stat
  integer(int64) :: n_in, n_out, n
  type(scale_shift) :: mold
  type(fkb_network) :: net
  character(len=512) :: msg
  logical :: first

  call get_command_argument(1, dir)
  call get_command_argument(2, scratch)
  open (newunit=u, file=trim(dir) // '/custom_cases.txt', status='old', action='read')
  first = .true.
  do
    read (u, *, iostat=ios) name, dtype, n_in, n_out, n
    if (ios /= 0) exit
    if (first) then
      msg = ''
      call net%load(trim(dir) // '/' // trim(name) // '.fkb', stat=stat, errmsg=msg)
      call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, "'scale_shift'") > 0, &
                 'unregistered scale_shift refused by name: ' // trim(msg))
      call fkb_register_layer('scale_shift', mold, stat=stat, errmsg=msg)
      call check(stat == FKB_OK, 'register scale_shift: ' // trim(msg))
      first = .false.
    end if
    call run_case(trim(name), trim(dtype), n_in, n_out, n)
  end do
  close (u)
  call check(.not. first, 'custom_cases.txt lists cases')
  call finish()

contains

  subroutine run_case(cname, cdtype, n_in, n_out, n)
    character(len=*), intent(in) :: cname, cdtype
    integer(int64), intent(in) :: n_in, n_out, n
    type(fkb_network) :: net, back
    real(real64), allocatable :: x(:, :), y_ref(:, :), y(:, :), y2(:, :)
    real(real32), allocatable :: y32(:, :)
    integer(int64) :: batches(3), b, k
    real(real64) :: rtol, e, worst
    integer :: stat
    character(len=512) :: msg
    character(len=:), allocatable :: path

    path = trim(dir) // '/' // cname // '.fkb'
    allocate(x(n_in, n), y_ref(n_out, n), y(n_out, n), y2(n_out, n), y32(n_out, n))
    call read_f64(trim(dir) // '/' // cname // '.x.bin', x)
    call read_f64(trim(dir) // '/' // cname // '.y.bin', y_ref)
    msg = ''
    call net%load(path, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cname // ': load: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net%n_inputs() == n_in .and. net%n_outputs() == n_out, cname // ': widths')
    call check(index(net%description(), 'layer scale_shift ') > 0, &
               cname // ': the file has scale_shift records')
    rtol = merge(1e-12_real64, 1e-5_real64, cdtype == 'float64')
    batches = [1_int64, 7_int64, n]
    worst = 0
    do k = 1, 3
      b = batches(k)
      if (cdtype == 'float32') then
        call net%predict(real(x(:, 1:b), real32), y32(:, 1:b), stat=stat, errmsg=msg)
        call check(stat == FKB_OK, cname // ': predict real32: ' // trim(msg))
        y(:, 1:b) = real(y32(:, 1:b), real64)
      else
        call net%predict(x(:, 1:b), y(:, 1:b), stat=stat, errmsg=msg)
        call check(stat == FKB_OK, cname // ': predict real64: ' // trim(msg))
      end if
      e = maxval(abs(y(:, 1:b) - y_ref(:, 1:b)) / max(1.0_real64, abs(y_ref(:, 1:b))))
      if (any(y(:, 1:b) /= y(:, 1:b))) e = huge(e)
      worst = max(worst, e)
      call check(e <= rtol, cname // ': agrees with Keras at batch ' // itoa(b))
    end do
    ! real64 host arrays on a float32 model compute in float32 too
    call net%predict(x, y2, stat=stat, errmsg=msg)
    e = maxval(abs(y2 - y_ref) / max(1.0_real64, abs(y_ref)))
    call check(stat == FKB_OK .and. e <= rtol, cname // ': real64 host arrays')
    write (output_unit, '(a, a, es10.3)') cname, ': max |fkb - keras|/max(1,|keras|) = ', worst
    ! save -> load: same records, same bits
    call net%save(trim(scratch) // '/' // cname // '_custom.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cname // ': save: ' // trim(msg))
    call back%load(trim(scratch) // '/' // cname // '_custom.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cname // ': reload: ' // trim(msg))
    if (stat /= FKB_OK) return
    call back%predict(x, y, stat=stat)
    call check(stat == FKB_OK .and. all(y == y2), cname // ': reloaded network, same bits')
  end subroutine run_case

  function itoa(i) result(s)
    integer(int64), intent(in) :: i
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

end program test_custom_keras
