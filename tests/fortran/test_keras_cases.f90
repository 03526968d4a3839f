!! Every reference case (tests/data/make_cases.py: Keras models of every layer and activation,
!! float32 and float64) through the Fortran API: batch sizes 1, 7 and 1024, real32 and real64
!! host arrays, rank-1 single samples, and a bit-exact .fkb save -> load round trip.
!!
!! Tolerance |a-b| <= rtol*max(1,|b|) with rtol = 1e-5 for float32 and 1e-12 for float64; a
!! real32 host array limits a float64 model to the float32 tolerance (its input is rounded).
program test_keras_cases
  use iso_fortran_env, only: real32, real64, int64
  use fkb
  use fkb_testing, only: check, finish, close_enough, read_f64, case_t, read_cases
  implicit none
  character(len=1024) :: dir, scratch
  type(case_t), allocatable :: cases(:)
  integer :: c

  call get_command_argument(1, dir)
  call get_command_argument(2, scratch)
  call read_cases(trim(dir), cases)
  call check(size(cases) > 0, 'cases.txt lists cases')
  do c = 1, size(cases)
    call run_case(cases(c))
  end do
  call finish()

contains

  subroutine run_case(cs)
    type(case_t), intent(in) :: cs
    type(fkb_network) :: net, net2
    real(real64), allocatable :: x(:, :), y_ref(:, :), y64(:, :), y64b(:, :)
    real(real32), allocatable :: y32(:, :), y1(:)
    real(real64) :: rtol
    character(len=512) :: msg
    character(len=:), allocatable :: path, saved
    integer :: stat, k
    logical :: exists
    integer(int64) :: batches(3), b
    batches = [1_int64, 7_int64, cs%n]
    allocate(x(cs%n_in, cs%n), y_ref(cs%n_out, cs%n))
    call read_f64(trim(dir) // '/' // cs%name // '.x.bin', x)
    call read_f64(trim(dir) // '/' // cs%name // '.y.bin', y_ref)
    path = trim(dir) // '/' // cs%name // '.fkb'
    inquire (file=path, exist=exists)
    if (.not. exists) path = trim(dir) // '/' // cs%name // '.txt'   ! legacy text cases
    msg = ''
    call net%load(path, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': load: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net%n_inputs() == cs%n_in .and. net%n_outputs() == cs%n_out, &
               cs%name // ': widths')
    call check((net%dtype() == FKB_FLOAT64) .eqv. (cs%dtype == 'float64'), cs%name // ': dtype')
    rtol = merge(1e-12_real64, 1e-5_real64, cs%dtype == 'float64')
    do k = 1, 3
      b = batches(k)
      allocate(y64(cs%n_out, b), y32(cs%n_out, b))
      call net%predict(x(:, 1:b), y64, stat=stat)
      call check(stat == FKB_OK, cs%name // ': predict real64')
      call check(close_enough(y64, y_ref(:, 1:b), rtol, rtol) <= 1, &
                 cs%name // ': real64 host vs Keras, batch ' // itoa(b))
      call net%predict(real(x(:, 1:b), real32), y32, stat=stat)
      call check(stat == FKB_OK, cs%name // ': predict real32')
      call check(close_enough(real(y32, real64), y_ref(:, 1:b), 1e-5_real64, 1e-5_real64) <= 1, &
                 cs%name // ': real32 host vs Keras, batch ' // itoa(b))
      deallocate(y64, y32)
    end do
    ! One sample as a rank-1 array.
    allocate(y1(cs%n_out))
    call net%predict(real(x(:, 2), real32), y1, stat=stat)
    call check(stat == FKB_OK .and. close_enough(reshape(real(y1, real64), [cs%n_out, 1_int64]), &
               y_ref(:, 2:2), 1e-5_real64, 1e-5_real64) <= 1, cs%name // ': rank-1 sample')
    ! Bit-exact round trip: save, load, same tensors, same outputs, same bytes when saved again.
    saved = trim(scratch) // '/' // cs%name // '.resaved.fkb'
    call net%save(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': save: ' // trim(msg))
    call net2%load(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': reload: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net2%description() == net%description(), cs%name // ': description survives')
    call check(same_tensors(net, net2), cs%name // ': tensors bit-identical after round trip')
    allocate(y64(cs%n_out, cs%n), y64b(cs%n_out, cs%n))
    call net%predict(x, y64)
    call net2%predict(x, y64b)
    call check(all(y64 == y64b .or. (y64 /= y64 .and. y64b /= y64b)), &
               cs%name // ': outputs bit-identical after round trip')
    call net2%save(saved // '2', stat=stat)
    call check(stat == FKB_OK .and. same_bytes(saved, saved // '2'), &
               cs%name // ': save is byte-stable')
  end subroutine run_case

  logical function same_tensors(a, b)
    type(fkb_network), intent(in) :: a, b
    real(real64), allocatable :: va(:), vb(:)
    integer(int64) :: i
    same_tensors = a%n_tensors() == b%n_tensors()
    do i = 1, a%n_tensors()
      call tensor_of(a, i, va)
      call tensor_of(b, i, vb)
      same_tensors = same_tensors .and. size(va) == size(vb)
      if (same_tensors) same_tensors = all(transfer(va, 1_int64, size(va)) == &
                                           transfer(vb, 1_int64, size(vb)))
    end do
  end function same_tensors

  subroutine tensor_of(net, i, v)
    type(fkb_network), intent(in) :: net
    integer(int64), intent(in) :: i
    real(real64), allocatable, intent(out) :: v(:)
    allocate(v(max(0_int64, net%tensor_size(i))))
    call net%get_tensor(i, v)
  end subroutine tensor_of

  logical function same_bytes(p1, p2)
    character(len=*), intent(in) :: p1, p2
    character(len=:), allocatable :: b1, b2
    b1 = slurp(p1)
    b2 = slurp(p2)
    same_bytes = b1 == b2 .and. len(b1) == len(b2)
  end function same_bytes

  function slurp(path) result(bytes)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: bytes
    integer :: u
    integer(int64) :: n
    open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read')
    inquire (unit=u, size=n)
    allocate(character(len=n) :: bytes)
    read (u) bytes
    close (u)
  end function slurp

  function itoa(i) result(s)
    integer(int64), intent(in) :: i
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

end program test_keras_cases
