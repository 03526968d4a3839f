!! Recurrent layers (simple_rnn, lstm, gru, bidirectional) against Keras: the cases of
!! tests/data/make_rnn_cases.py (rnn_cases.txt), float32 and float64.
!!
!! * `seq` cases: whole sequences at batch 1, 7 and 256; real32 and real64 host arrays; a
!!   save -> load round trip (layer records written back exactly as read, outputs and bytes
!!   stable); deterministic mode gives the same bits at every batch size.
!! * `step` / `keras_step` cases: the sequence fed one step per call with an fkb_rnn_state
!!   equals Keras on the whole sequence (or a stateful Keras model stepped the same way);
!!   reset() starts again; a call without the state starts from zero.
!! * A steady-state predict of a recurrent network allocates nothing.
!! * Bad files (tensor shapes, merge_mode, inner layer, input rank, keys) give clear errors.
!!
!! Tolerance |a-b| <= rtol*max(1,|b|), rtol = 1e-5 (float32), 1e-12 (float64). The largest
!! error of each case is printed.
module test_recurrent_m
  use iso_fortran_env, only: real32, real64, int64, output_unit
  use iso_c_binding, only: c_size_t
  use fkb
  use fkb_testing, only: check, finish, read_f64, write_fkb
  implicit none

  type :: rcase_t
    character(len=:), allocatable :: name, dtype, mode
    integer(int64) :: n_in, n_out, n, steps, group
  end type rcase_t

  type, bind(c) :: mallinfo2_t
    integer(c_size_t) :: arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, &
                         fordblks, keepcost
  end type mallinfo2_t
  interface
    function mallinfo2() bind(c, name='mallinfo2')
      import :: mallinfo2_t
      type(mallinfo2_t) :: mallinfo2
    end function mallinfo2
  end interface

  character(len=1024) :: dir, scratch
  real(real64) :: worst(2) = 0

contains

  function itoa(i) result(s)
    integer(int64), intent(in) :: i
    character(len=:), allocatable :: s
    character(len=24) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

  subroutine read_rnn_cases(d, cs)
    character(len=*), intent(in) :: d
    type(rcase_t), allocatable, intent(out) :: cs(:)
    character(len=256) :: name, dtype, mode
    integer :: u, ios, count, i
    open (newunit=u, file=d // '/rnn_cases.txt', status='old', action='read')
    count = 0
    do
      read (u, *, iostat=ios) name
      if (ios /= 0) exit
      count = count + 1
    end do
    rewind (u)
    allocate(cs(count))
    do i = 1, count
      read (u, *) name, dtype, mode, cs(i)%n_in, cs(i)%n_out, cs(i)%n, cs(i)%steps, cs(i)%group
      cs(i)%name = trim(name)
      cs(i)%dtype = trim(dtype)
      cs(i)%mode = trim(mode)
    end do
    close (u)
  end subroutine read_rnn_cases

  real(real64) function err(a, b)
    !! max |a-b| / max(1, |b|); huge if a NaN appears where b is a number.
    real(real64), intent(in) :: a(:, :), b(:, :)
    err = maxval(abs(a - b) / max(1.0_real64, abs(b)))
    if (any(a /= a .and. b == b)) err = huge(1.0_real64)
  end function err

  subroutine record(cs, e, what)
    type(rcase_t), intent(in) :: cs
    real(real64), intent(in) :: e
    character(len=*), intent(in) :: what
    real(real64) :: rtol
    integer :: k
    k = merge(2, 1, cs%dtype == 'float64')
    rtol = merge(1e-12_real64, 1e-5_real64, k == 2)
    worst(k) = max(worst(k), e)
    call check(e <= rtol, cs%name // ': ' // what)
    if (.not. (e <= rtol)) write (output_unit, '(a, es10.3)') '  error ', e
  end subroutine record

  subroutine predict_model_precision(net, cs, x, y)
    !! predict in the network's own precision (a float32 model gets real32 arrays, as Keras).
    type(fkb_network), intent(inout) :: net
    type(rcase_t), intent(in) :: cs
    real(real64), intent(in) :: x(:, :)
    real(real64), intent(out) :: y(:, :)
    real(real32), allocatable :: y32(:, :)
    integer :: stat
    character(len=512) :: msg
    msg = ''
    if (cs%dtype == 'float32') then
      allocate(y32(size(y, 1), size(y, 2)))
      call net%predict(real(x, real32), y32, stat=stat, errmsg=msg)
      y = real(y32, real64)
    else
      call net%predict(x, y, stat=stat, errmsg=msg)
    end if
    call check(stat == FKB_OK, cs%name // ': predict: ' // trim(msg))
  end subroutine predict_model_precision

  subroutine run_seq(cs)
    type(rcase_t), intent(in) :: cs
    type(fkb_network) :: net, net2
    real(real64), allocatable :: x(:, :), y_ref(:, :), y(:, :), y2(:, :), yb(:, :)
    integer(int64) :: batches(3), b, j0, j1
    real(real64) :: e
    character(len=512) :: msg
    character(len=:), allocatable :: saved
    integer :: stat, k

    allocate(x(cs%n_in, cs%n), y_ref(cs%n_out, cs%n), y(cs%n_out, cs%n))
    call read_f64(trim(dir) // '/' // cs%name // '.x.bin', x)
    call read_f64(trim(dir) // '/' // cs%name // '.y.bin', y_ref)
    msg = ''
    call net%load(trim(dir) // '/' // cs%name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': load: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net%n_inputs() == cs%n_in .and. net%n_outputs() == cs%n_out, cs%name // ': widths')
    call check(net%is_recurrent(), cs%name // ': is_recurrent')

    batches = [1_int64, 7_int64, cs%n]
    e = 0
    do k = 1, 3
      b = batches(k)
      y = huge(1.0_real64)
      do j0 = 1, cs%n, b
        j1 = min(cs%n, j0 + b - 1)
        call predict_model_precision(net, cs, x(:, j0:j1), y(:, j0:j1))
      end do
      e = max(e, err(y, y_ref))
      call record(cs, err(y, y_ref), 'vs Keras, batch ' // itoa(b))
    end do
    ! The other host precision: float64 arrays into a float32 model and vice versa.
    if (cs%dtype == 'float32') then
      call net%predict(x, y, stat=stat)
      call record(cs, err(y, y_ref), 'real64 host arrays')
    end if
    write (output_unit, '(a, a, es10.3)') cs%name, ': max error ', e

    ! Round trip: the header written back holds the layer records as read; outputs identical.
    saved = trim(scratch) // '/' // cs%name // '.resaved.fkb'
    call net%save(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': save: ' // trim(msg))
    call check(same_layer_records(trim(dir) // '/' // cs%name // '.fkb', saved), &
               cs%name // ': layer records written back byte-identical')
    call net2%load(saved, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': reload: ' // trim(msg))
    if (stat /= FKB_OK) return
    allocate(y2(cs%n_out, cs%n))
    call predict_model_precision(net, cs, x, y)
    call predict_model_precision(net2, cs, x, y2)
    call check(all(y == y2), cs%name // ': outputs bit-identical after round trip')
    call net2%save(saved // '2', stat=stat)
    call check(stat == FKB_OK .and. same_bytes(saved, saved // '2'), cs%name // ': save is byte-stable')

    ! Deterministic mode: every batch size gives the same bits as the whole batch.
    call fkb_set_deterministic(.true.)
    allocate(yb(cs%n_out, cs%n))
    call predict_model_precision(net, cs, x, y)
    call record(cs, err(y, y_ref), 'vs Keras, deterministic mode')
    do k = 1, 2
      b = batches(k)
      do j0 = 1, cs%n, b
        j1 = min(cs%n, j0 + b - 1)
        call predict_model_precision(net, cs, x(:, j0:j1), yb(:, j0:j1))
      end do
      call check(all(y == yb), cs%name // ': deterministic, batch ' // itoa(b) // &
                 ' bit-identical to the whole batch')
    end do
    call fkb_set_deterministic(.false.)
  end subroutine run_seq

  subroutine run_steps(cs)
    ! x holds T steps per sample (n_in values each), y the reference output of every step.
    type(rcase_t), intent(in) :: cs
    type(fkb_network) :: net
    type(fkb_rnn_state) :: st
    real(real64), allocatable :: x(:, :), y_ref(:, :), y(:, :), ys(:, :)
    integer(int64) :: batches(3), b, j0, j1, s, tt
    real(real64) :: e
    character(len=512) :: msg
    integer :: stat, k

    tt = cs%steps
    allocate(x(cs%n_in * tt, cs%n), y_ref(cs%n_out * tt, cs%n), y(cs%n_out * tt, cs%n))
    call read_f64(trim(dir) // '/' // cs%name // '.x.bin', x)
    call read_f64(trim(dir) // '/' // cs%name // '.y.bin', y_ref)
    msg = ''
    call net%load(trim(dir) // '/' // cs%name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, cs%name // ': load: ' // trim(msg))
    if (stat /= FKB_OK) return
    call check(net%n_inputs() == cs%n_in .and. net%n_outputs() == cs%n_out, cs%name // ': widths')
    call check(net%is_recurrent(), cs%name // ': is_recurrent')

    if (cs%mode == 'keras_step') then
      batches = cs%group    ! Keras' stateful model has a fixed batch
    else
      batches = [1_int64, 7_int64, cs%n]
    end if
    e = 0
    do k = 1, 3
      if (k > 1 .and. batches(k) == batches(1)) exit
      b = batches(k)
      y = huge(1.0_real64)
      do j0 = 1, cs%n, b
        j1 = min(cs%n, j0 + b - 1)
        call st%reset()
        call step_through(j0, j1)
      end do
      e = max(e, err(y, y_ref))
      call record(cs, err(y, y_ref), 'stepped with state vs Keras, batch ' // itoa(b))
    end do
    write (output_unit, '(a, a, es10.3)') cs%name, ': max error ', e

    ! reset() starts a new sequence: the same outputs again.
    b = min(cs%n, batches(1) * 3)
    call st%reset()
    call step_through(1_int64, b)
    call st%reset()
    allocate(ys(size(y, 1), b))
    ys = y(:, 1:b)
    call step_through(1_int64, b)
    call check(all(ys == y(:, 1:b)), cs%name // ': reset() restarts the sequence')
    ! Without reset the state carries on: the second pass differs from the first.
    call step_through(1_int64, b)
    call check(any(ys /= y(:, 1:b)), cs%name // ': without reset the state carries on')
    ! Without a state object every call starts from zero: the first step's output, always.
    call predict_model_precision(net, cs, x(1:cs%n_in, 1:b), ys(1:cs%n_out, :))
    call predict_model_precision(net, cs, x(1:cs%n_in, 1:b), ys(1:cs%n_out, :))
    call record(cs, err(ys(1:cs%n_out, :), y_ref(1:cs%n_out, 1:b)), &
                'without state: zero initial state')
  contains
    subroutine step_through(a, z)
      integer(int64), intent(in) :: a, z
      real(real32), allocatable :: y32(:, :)
      real(real64), allocatable :: y64(:, :), xs(:, :)
      allocate(y32(cs%n_out, z - a + 1), y64(cs%n_out, z - a + 1))
      do s = 1, tt
        xs = x((s - 1) * cs%n_in + 1:s * cs%n_in, a:z)
        if (cs%dtype == 'float32') then
          call net%predict(real(xs, real32), y32, stat=stat, errmsg=msg, state=st)
          y64 = real(y32, real64)
        else
          call net%predict(xs, y64, stat=stat, errmsg=msg, state=st)
        end if
        call check(stat == FKB_OK, cs%name // ': predict with state: ' // trim(msg))
        y((s - 1) * cs%n_out + 1:s * cs%n_out, a:z) = y64
      end do
    end subroutine step_through
  end subroutine run_steps

  subroutine no_allocation()
    ! After a warm-up call of the same batch size, predicting (with and without state)
    ! leaves the heap unchanged.
    type(fkb_network) :: net
    type(fkb_rnn_state) :: st
    type(mallinfo2_t) :: before, after
    character(len=*), parameter :: names(3) = [character(len=32) :: &
      'lstm_dense_seq_float32', 'bi_ave_gru0_float64', 'gru0_rs1_gb1_float32']
    real(real32), allocatable :: x32(:, :), y32(:, :)
    real(real64), allocatable :: x64(:, :), y64(:, :)
    integer :: k, i, stat
    do k = 1, size(names)
      call net%load(trim(dir) // '/' // trim(names(k)) // '.fkb', stat=stat)
      call check(stat == FKB_OK, trim(names(k)) // ': load for the allocation test')
      if (stat /= FKB_OK) cycle
      allocate(x32(net%n_inputs(), 33), y32(net%n_outputs(), 33))
      allocate(x64(net%n_inputs(), 33), y64(net%n_outputs(), 33))
      x32 = 0.5
      x64 = 0.25
      call net%predict(x32, y32)
      call net%predict(x64, y64, state=st)
      before = mallinfo2()
      do i = 1, 50
        call net%predict(x32, y32)
        call net%predict(x64, y64, state=st)
        call net%predict(x32, y32, state=st)
      end do
      after = mallinfo2()
      call check(before%uordblks == after%uordblks .and. before%hblkhd == after%hblkhd .and. &
                 before%ordblks == after%ordblks, trim(names(k)) // &
                 ': steady-state predict allocates nothing')
      deallocate(x32, y32, x64, y64)
    end do
  end subroutine no_allocation

  subroutine bad_files()
    character(len=*), parameter :: nl = new_line('a')
    character(len=*), parameter :: head = 'fkb-model' // nl // 'dtype float32' // nl // &
                                          'input 5,3' // nl
    character(len=*), parameter :: lstm = 'layer lstm name=l units=4 activation=tanh ' // &
      'use_bias=1 return_sequences=0 go_backwards=0 stateful=0 recurrent_activation=sigmoid'
    character(len=*), parameter :: lstm_t = 'tensor kernel float32 3,16' // nl // &
      'tensor recurrent_kernel float32 4,16' // nl // 'tensor bias float32 16' // nl
    character(len=*), parameter :: bi = 'layer bidirectional name=bi merge_mode=concat ' // &
      'layer=gru units=2 activation=tanh use_bias=1 return_sequences=1 go_backwards=0 ' // &
      'stateful=0 recurrent_activation=sigmoid reset_after=1'
    character(len=*), parameter :: bi_t = &
      'tensor forward_kernel float32 3,6' // nl // 'tensor forward_recurrent_kernel float32 2,6' &
      // nl // 'tensor forward_bias float32 2,6' // nl // 'tensor backward_kernel float32 3,6' &
      // nl // 'tensor backward_recurrent_kernel float32 2,6' // nl // &
      'tensor backward_bias float32 2,6' // nl
    integer, parameter :: lstm_bytes = (48 + 64 + 16) * 4, bi_bytes = 2 * (18 + 12 + 12) * 4
    character(len=:), allocatable :: d

    d = trim(scratch)
    ! The well-formed files load (so the failures below are the intended ones).
    call expect_ok('good_lstm', head // lstm // nl // lstm_t // 'end' // nl, lstm_bytes)
    call expect_ok('good_bi', head // bi // nl // bi_t // 'end' // nl, bi_bytes)
    call expect_error('lstm_kernel_shape', head // lstm // nl // &
      'tensor kernel float32 3,12' // nl // 'tensor recurrent_kernel float32 4,16' // nl // &
      'tensor bias float32 16' // nl // 'end' // nl, lstm_bytes - 16 * 4, 'kernel')
    call expect_error('gru_bias_shape', head // 'layer gru name=g units=2 activation=tanh ' // &
      'use_bias=1 return_sequences=0 go_backwards=0 stateful=0 recurrent_activation=sigmoid ' // &
      'reset_after=1' // nl // 'tensor kernel float32 3,6' // nl // &
      'tensor recurrent_kernel float32 2,6' // nl // 'tensor bias float32 6' // nl // 'end' // nl, &
      (18 + 12 + 6) * 4, 'bias')
    call expect_error('bi_merge_mode', head // replace(bi, 'merge_mode=concat', &
      'merge_mode=max') // nl // bi_t // 'end' // nl, bi_bytes, 'merge_mode')
    call expect_error('bi_inner_layer', head // replace(bi, 'layer=gru', 'layer=conv1d') // nl // &
      bi_t // 'end' // nl, bi_bytes, "unknown inner layer 'conv1d'")
    call expect_error('bi_tensor_names', head // bi // nl // replace(bi_t, &
      'tensor backward_kernel', 'tensor kernel') // 'end' // nl, bi_bytes, 'backward_kernel')
    call expect_error('lstm_rank1', 'fkb-model' // nl // 'dtype float32' // nl // 'input 15' // &
      nl // lstm // nl // lstm_t // 'end' // nl, lstm_bytes, '(steps, channels)')
    call expect_error('lstm_no_rec_act', head // replace(lstm, ' recurrent_activation=sigmoid', &
      '') // nl // lstm_t // 'end' // nl, lstm_bytes, 'recurrent_activation')
    call expect_error('lstm_bad_rec_act', head // replace(lstm, 'recurrent_activation=sigmoid', &
      'recurrent_activation=sigmoidal') // nl // lstm_t // 'end' // nl, lstm_bytes, 'sigmoidal')
    call expect_error('rnn_extra_key', head // 'layer simple_rnn name=r units=2 ' // &
      'activation=tanh use_bias=0 return_sequences=0 go_backwards=0 stateful=0 ' // &
      'recurrent_activation=sigmoid' // nl // 'tensor kernel float32 3,2' // nl // &
      'tensor recurrent_kernel float32 2,2' // nl // 'end' // nl, 40, 'recurrent_activation')
    call expect_error('rnn_units', head // replace(lstm, 'units=4', 'units=0') // nl // lstm_t // &
      'end' // nl, lstm_bytes, 'units')
  contains
    subroutine expect_ok(name, header, nbytes)
      character(len=*), intent(in) :: name, header
      integer, intent(in) :: nbytes
      type(fkb_network) :: net
      integer :: stat
      character(len=512) :: msg
      msg = ''
      call write_fkb(d // '/' // name // '.fkb', header, nbytes)
      call net%load(d // '/' // name // '.fkb', stat=stat, errmsg=msg)
      call check(stat == FKB_OK, name // ': loads: ' // trim(msg))
    end subroutine expect_ok

    subroutine expect_error(name, header, nbytes, needle)
      character(len=*), intent(in) :: name, header, needle
      integer, intent(in) :: nbytes
      type(fkb_network) :: net
      integer :: stat
      character(len=512) :: msg
      msg = ''
      call write_fkb(d // '/' // name // '.fkb', header, nbytes)
      call net%load(d // '/' // name // '.fkb', stat=stat, errmsg=msg)
      call check(stat /= FKB_OK .and. index(msg, needle) > 0, name // ': refused with a ' // &
                 "message naming '" // needle // "': " // trim(msg))
      write (output_unit, '(a)') '  ' // name // ': ' // trim(msg)
    end subroutine expect_error
  end subroutine bad_files

  function replace(s, old, new) result(r)
    character(len=*), intent(in) :: s, old, new
    character(len=:), allocatable :: r
    integer :: i
    i = index(s, old)
    if (i == 0) then
      r = s
    else
      r = s(1:i - 1) // new // s(i + len(old):)
    end if
  end function replace

  function read_bytes(path) result(bytes)
    character(len=*), intent(in) :: path
    character(len=:), allocatable :: bytes
    integer :: u, n
    open (newunit=u, file=path, access='stream', form='unformatted', status='old', action='read')
    inquire (unit=u, size=n)
    allocate(character(len=n) :: bytes)
    read (u) bytes
    close (u)
  end function read_bytes

  logical function same_bytes(a, b)
    character(len=*), intent(in) :: a, b
    same_bytes = read_bytes(a) == read_bytes(b)
  end function same_bytes

  logical function same_layer_records(a, b)
    ! Every `layer` and `tensor` line of file a's header appears, in order, in file b's.
    character(len=*), intent(in) :: a, b
    character(len=:), allocatable :: ha, hb, line
    integer :: i, j, at
    ha = header_of(read_bytes(a))
    hb = header_of(read_bytes(b))
    same_layer_records = .true.
    at = 1
    i = 1
    do while (i <= len(ha))
      j = index(ha(i:), new_line('a')) + i - 1
      line = ha(i:j)
      i = j + 1
      if (index(line, 'layer ') /= 1 .and. index(line, 'tensor ') /= 1) cycle
      j = index(hb(at:), line)
      if (j == 0 .or. (at + j - 1 > 1 .and. hb(max(1, at + j - 2):at + j - 2) /= new_line('a'))) then
        write (output_unit, '(a)') '  not written back: ' // line
        same_layer_records = .false.
        return
      end if
      at = at + j - 1 + len(line)
    end do
  end function same_layer_records

  function header_of(bytes) result(h)
    character(len=*), intent(in) :: bytes
    character(len=:), allocatable :: h
    integer(int64) :: hl
    hl = transfer(bytes(17:24), hl)
    h = bytes(25:24 + hl)
  end function header_of

end module test_recurrent_m

program test_recurrent
  use iso_fortran_env, only: output_unit
  use fkb_testing, only: check, finish
  use test_recurrent_m
  implicit none
  type(rcase_t), allocatable :: cases(:)
  integer :: c

  call get_command_argument(1, dir)
  call get_command_argument(2, scratch)
  call read_rnn_cases(trim(dir), cases)
  call check(size(cases) > 0, 'rnn_cases.txt lists cases')
  do c = 1, size(cases)
    select case (cases(c)%mode)
    case ('seq')
      call run_seq(cases(c))
    case default
      call run_steps(cases(c))
    end select
  end do
  write (output_unit, '(a, es10.3, a, es10.3)') 'largest error over all cases: float32 ', &
    worst(1), ', float64 ', worst(2)
  call no_allocation()
  call bad_files()
  call finish()
end program test_recurrent
