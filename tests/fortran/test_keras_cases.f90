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
  call read_cases(trim(dir), cases, all=.true.)
  call check(size(cases) > 0, 'cases.txt lists cases')
  do c = 1, size(cases)
    if (size(cases(c)%in_sizes) > 1 .or. size(cases(c)%out_sizes) > 1) then
      call run_multi_case(cases(c))
    else
      call run_case(cases(c))
    end if
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

  subroutine run_multi_case(cs)
    ! Several inputs/outputs: x.bin/y.bin rows hold the inputs/outputs concatenated; they go
    ! in as fkb_ref arrays, in real64 and real32, batches 1, 7 and all; then save -> reload.
    type(case_t), intent(in) :: cs
    type(fkb_network) :: net, net2
    real(real64), allocatable :: x(:, :), y_ref(:, :), y_all(:, :)
    real(real64), allocatable, target :: xa(:, :), ya(:, :)
    real(real32), allocatable, target :: xb(:, :), yb(:, :)
    type(fkb_ref64), allocatable :: in64(:), out64(:)
    type(fkb_ref32), allocatable :: in32(:), out32(:)
    integer(int64) :: batches(3), b, at
    real(real64) :: rtol
    character(len=512) :: msg
    character(len=:), allocatable :: saved
    integer :: stat, k, ni, no
    ni = size(cs%in_sizes)
    no = size(cs%out_sizes)
    batches = [1_int64, 7_int64, cs%n]
    allocate(x(cs%n_in, cs%n), y_ref(cs%n_out, cs%n))
    call read_f64(trim(dir) // '/' // cs%name // '.x.bin', x)
    call read_f64(trim(dir) // '/' // cs%name // '.y.bin', y_ref)
    msg = ''
    call net%load(trim(dir) // '/' // cs%name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': load: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net%input_count() == ni .and. net%output_count() == no, cs%name // ': counts')
    do k = 1, ni
      call check(net%input_size(k) == cs%in_sizes(k), cs%name // ': input size ' // itoa(int(k, int64)))
    end do
    do k = 1, no
      call check(net%output_size(k) == cs%out_sizes(k), cs%name // ': output size ' // itoa(int(k, int64)))
    end do
    rtol = merge(1e-12_real64, 1e-5_real64, cs%dtype == 'float64')
    allocate(in64(ni), out64(no), in32(ni), out32(no))
    do k = 1, 3
      b = batches(k)
      ! Inputs/outputs live side by side in one array per precision, one block per input.
      allocate(xa(cs%n_in * b, 1), ya(cs%n_out * b, 1), xb(cs%n_in * b, 1), yb(cs%n_out * b, 1))
      call split(x(:, 1:b), cs%in_sizes, xa(:, 1))
      xb = real(xa, real32)
      at = 0
      do stat = 1, ni
        in64(stat) = fkb_ref64(xa(at + 1:at + cs%in_sizes(stat) * b, 1), cs%in_sizes(stat), b)
        in32(stat) = fkb_ref32(xb(at + 1:at + cs%in_sizes(stat) * b, 1), cs%in_sizes(stat), b)
        at = at + cs%in_sizes(stat) * b
      end do
      at = 0
      do stat = 1, no
        out64(stat) = fkb_ref64(ya(at + 1:at + cs%out_sizes(stat) * b, 1), cs%out_sizes(stat), b)
        out32(stat) = fkb_ref32(yb(at + 1:at + cs%out_sizes(stat) * b, 1), cs%out_sizes(stat), b)
        at = at + cs%out_sizes(stat) * b
      end do
      call net%predict(in64, out64, stat=stat, errmsg=msg)
      call check(stat == FKB_OK, cs%name // ': predict refs64: ' // trim(msg))
      call join(ya(:, 1), cs%out_sizes, b, y_all)
      call check(close_enough(y_all, y_ref(:, 1:b), rtol, rtol) <= 1, &
                 cs%name // ': real64 refs vs Keras, batch ' // itoa(b))
      call net%predict(in32, out32, stat=stat, errmsg=msg)
      call check(stat == FKB_OK, cs%name // ': predict refs32: ' // trim(msg))
      call join(real(yb(:, 1), real64), cs%out_sizes, b, y_all)
      call check(close_enough(y_all, y_ref(:, 1:b), 1e-5_real64, 1e-5_real64) <= 1, &
                 cs%name // ': real32 refs vs Keras, batch ' // itoa(b))
      if (k < 3) deallocate(xa, ya, xb, yb)
    end do
    ! Wrong number of arrays: a clear error, and the network still works afterwards.
    call net%predict(in64(1:ni - 1), out64, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'input(s)') > 0, &
               cs%name // ': too few inputs refused: ' // trim(msg))
    saved = trim(scratch) // '/' // cs%name // '.resaved.fkb'
    call net%save(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': save: ' // trim(msg))
    call net2%load(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': reload: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net2%description() == net%description(), cs%name // ': description survives')
    call check(same_tensors(net, net2), cs%name // ': tensors bit-identical after round trip')
    call net2%save(saved // '2', stat=stat)
    call check(stat == FKB_OK .and. same_bytes(saved, saved // '2'), &
               cs%name // ': save is byte-stable')
  end subroutine run_multi_case

  subroutine split(x, sizes, flat)
    ! Rows of x (per sample: the inputs concatenated) -> one block per input, each
    ! (size_k, batch) in Fortran order, blocks one after another.
    real(real64), intent(in) :: x(:, :)
    integer(int64), intent(in) :: sizes(:)
    real(real64), intent(out) :: flat(:)
    integer(int64) :: at, row, j, b
    integer :: k
    b = size(x, 2, int64)
    at = 0
    row = 0
    do k = 1, size(sizes)
      do j = 1, b
        flat(at + (j - 1) * sizes(k) + 1:at + j * sizes(k)) = x(row + 1:row + sizes(k), j)
      end do
      at = at + sizes(k) * b
      row = row + sizes(k)
    end do
  end subroutine split

  subroutine join(flat, sizes, b, y)
    ! The inverse of split.
    real(real64), intent(in) :: flat(:)
    integer(int64), intent(in) :: sizes(:), b
    real(real64), allocatable, intent(out) :: y(:, :)
    integer(int64) :: at, row, j
    integer :: k
    allocate(y(sum(sizes), b))
    at = 0
    row = 0
    do k = 1, size(sizes)
      do j = 1, b
        y(row + 1:row + sizes(k), j) = flat(at + (j - 1) * sizes(k) + 1:at + j * sizes(k))
      end do
      at = at + sizes(k) * b
      row = row + sizes(k)
    end do
  end subroutine join

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
