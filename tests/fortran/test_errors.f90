!! Every malformed input gets its status code and a message that says what is wrong, and a
!! failed call loses nothing: the network loaded before still works.
program test_errors
  use iso_fortran_env, only: int32, int64, real32
  use fkb
  use fkb_testing, only: check, finish, write_fkb
  implicit none
  character(len=1024) :: scratch
  character(len=:), allocatable :: d
  character, parameter :: nl = new_line('a')
  character(len=*), parameter :: GOOD = 'fkb-model' // nl // 'dtype float32' // nl // &
    'input 2' // nl // 'layer dense name=d units=3 activation=relu use_bias=1' // nl // &
    'tensor kernel float32 2,3' // nl // 'tensor bias float32 3' // nl // 'end' // nl
  ! A two-input graph: a dense branch on input a added to input b; outputs the sum and da.
  character(len=*), parameter :: GRAPH = 'fkb-model' // nl // 'dtype float32' // nl // &
    'input 2 name=a' // nl // 'input 3 name=b' // nl // &
    'layer dense name=da units=3 activation=relu use_bias=1 inputs=a' // nl // &
    'tensor kernel float32 2,3' // nl // 'tensor bias float32 3' // nl // &
    'layer add name=s inputs=da,b' // nl // 'output s,da' // nl // 'end' // nl
  type(fkb_network) :: net
  real(real32) :: x(2, 4), y(3, 4), y_before(3, 4), big(5, 9), ybig(5, 6)
  real(real32), allocatable :: empty_x(:, :), empty_y(:, :)
  integer :: stat_
  character(len=1024) :: msg_

  call get_command_argument(1, scratch)
  d = trim(scratch)

  ! A well-formed hand-written file loads, so the malformed variants below test one thing each.
  call write_fkb(d // '/good.fkb', GOOD, 9 * 4)
  call expect_load(d // '/good.fkb', FKB_OK, '')

  ! Files that are not models.
  call expect_load(d // '/does_not_exist.fkb', FKB_ERR_IO, 'does_not_exist')
  call write_text(d // '/empty.fkb', '')
  call expect_load(d // '/empty.fkb', FKB_ERR_FORMAT, 'empty')
  call write_text(d // '/text.fkb', 'hello world' // nl)
  call expect_load(d // '/text.fkb', FKB_ERR_FORMAT, 'not a .fkb file')
  call write_text(d // '/badmagic.fkb', char(137) // 'FKBxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')
  call expect_load(d // '/badmagic.fkb', FKB_ERR_FORMAT, 'magic')
  call write_fkb(d // '/v2.fkb', GOOD, 9 * 4, major=2)
  call expect_load(d // '/v2.fkb', FKB_ERR_VERSION, 'version 2')

  ! Sizes that disagree with the file.
  call write_fkb(d // '/truncated.fkb', GOOD, 9 * 4 - 5)
  call expect_load(d // '/truncated.fkb', FKB_ERR_FORMAT, 'truncated')
  call write_fkb(d // '/trailing.fkb', GOOD, 9 * 4 + 3)
  call expect_load(d // '/trailing.fkb', FKB_ERR_FORMAT, 'unexpected bytes')
  call write_fkb(d // '/shape.fkb', replace(GOOD, '2,3', '3,2'), 9 * 4)
  call expect_load(d // '/shape.fkb', FKB_ERR_SHAPE, "tensor 'kernel' has shape (3,2)")
  call write_fkb(d // '/missing_tensor.fkb', replace(GOOD, 'tensor bias float32 3' // nl, ''), &
                 6 * 4)
  call expect_load(d // '/missing_tensor.fkb', FKB_ERR_SHAPE, "missing tensor 'bias'")
  call write_fkb(d // '/huge_units.fkb', replace(GOOD, 'units=3', 'units=1000000000000'), 36)
  call expect_load(d // '/huge_units.fkb', FKB_ERR_FORMAT, 'units must be in')
  call write_fkb(d // '/huge_tensor.fkb', replace(replace(replace(GOOD, 'units=3', &
                 'units=2000000000'), '2,3', '2,2000000000'), 'bias float32 3', &
                 'bias float32 2000000000'), 36)
  call expect_load(d // '/huge_tensor.fkb', FKB_ERR_FORMAT, 'truncated')
  call write_fkb(d // '/huge_input.fkb', replace(GOOD, 'input 2', 'input 1000000000000'), 36)
  call expect_load(d // '/huge_input.fkb', FKB_ERR_FORMAT, 'input shape must be positive')

  ! Graphs (format 1.2) edited by hand: every broken reference or shape is named.
  call write_fkb(d // '/graph.fkb', GRAPH, 36)
  call expect_load(d // '/graph.fkb', FKB_OK, '')
  call net%load(d // '/good.fkb')
  x = 1
  call net%predict(x, y_before)
  call graph_case('unknown_input', replace(GRAPH, 'inputs=da,b', 'inputs=da,zz'), &
                  FKB_ERR_FORMAT, "'zz' is not an input or an earlier layer")
  call graph_case('self_reference', replace(GRAPH, 'inputs=da,b', 'inputs=da,s'), &
                  FKB_ERR_FORMAT, "'s' is not an input or an earlier layer")
  call graph_case('forward_reference', replace(GRAPH, 'inputs=a' // nl, 'inputs=s' // nl), &
                  FKB_ERR_FORMAT, "'s' is not an input or an earlier layer")
  call graph_case('duplicate_name', replace(GRAPH, 'name=s ', 'name=da '), FKB_ERR_FORMAT, &
                  "the name 'da' is already taken")
  call graph_case('duplicate_input', replace(GRAPH, 'name=b', 'name=a'), FKB_ERR_FORMAT, &
                  "two inputs are called 'a'")
  call graph_case('unknown_output', replace(GRAPH, 'output s,da', 'output s,zz'), &
                  FKB_ERR_FORMAT, "output record: 'zz' is not an input or an earlier layer")
  call graph_case('twice_output', replace(GRAPH, 'output s,da', 'output s,s'), &
                  FKB_ERR_FORMAT, "'s' named twice")
  call graph_case('unnamed_first', replace(GRAPH, ' inputs=a' // nl, nl), FKB_ERR_FORMAT, &
                  'the first layer must name its inputs')
  call graph_case('merge_shapes', replace(GRAPH, 'input 3 name=b', 'input 4 name=b'), &
                  FKB_ERR_SHAPE, 'input 2 has shape (4), input 1 has (3)')
  call graph_case('subtract_three', replace(GRAPH, 'layer add name=s inputs=da,b', &
                  'layer subtract name=s inputs=da,b,a'), FKB_ERR_FORMAT, 'takes 2..2 inputs, got 3')
  call graph_case('concat_axis', replace(GRAPH, 'layer add name=s inputs=da,b', &
                  'layer concatenate name=s axis=2 inputs=da,b'), FKB_ERR_FORMAT, &
                  'axis 2 is not an axis of the per-sample shape')
  call graph_case('late_input', replace(GRAPH, 'layer add', 'input 4 name=c' // nl // &
                  'layer add'), FKB_ERR_FORMAT, 'misplaced or malformed input record')
  call graph_case('bad_shape', replace(GRAPH, 'input 3 name=b', 'input 3,0 name=b'), &
                  FKB_ERR_FORMAT, 'input shape must be positive')
  call graph_case('output_first', replace(replace(GRAPH, 'output s,da' // nl, ''), &
                  'layer dense', 'output a' // nl // 'layer dense'), FKB_ERR_FORMAT, &
                  'misplaced or malformed output record')

  call strided_refs()

  ! Unknown names and options.
  call write_fkb(d // '/layer.fkb', replace(GOOD, 'layer dense', 'layer conv9d'), 36)
  call expect_load(d // '/layer.fkb', FKB_ERR_UNSUPPORTED, "unknown layer type 'conv9d'")
  call write_fkb(d // '/act.fkb', replace(GOOD, 'activation=relu', 'activation=swoosh'), 36)
  call expect_load(d // '/act.fkb', FKB_ERR_UNSUPPORTED, "unknown activation 'swoosh'")
  call write_fkb(d // '/option.fkb', replace(GOOD, 'use_bias=1', 'use_bias=1 lora_rank=4'), 36)
  call expect_load(d // '/option.fkb', FKB_ERR_UNSUPPORTED, "unknown option 'lora_rank'")
  call write_fkb(d // '/record.fkb', replace(GOOD, 'end', 'frobnicate' // nl // 'end'), 36)
  call expect_load(d // '/record.fkb', FKB_ERR_FORMAT, "unknown record 'frobnicate'")
  call write_fkb(d // '/noend.fkb', replace(GOOD, 'end' // nl, ''), 36)
  call expect_load(d // '/noend.fkb', FKB_ERR_FORMAT, "missing 'end'")
  call write_fkb(d // '/dtype.fkb', replace(GOOD, 'dtype float32', 'dtype float16'), 36)
  call expect_load(d // '/dtype.fkb', FKB_ERR_UNSUPPORTED, 'float16')
  call write_fkb(d // '/notint.fkb', replace(GOOD, 'units=3', 'units=3.5'), 36)
  call expect_load(d // '/notint.fkb', FKB_ERR_FORMAT, 'must be an integer')

  ! Legacy text files.
  call write_text(d // '/legacy_nan.txt', '3' // nl // 'input NaN' // nl // 'dense 2' // nl // &
                  'linear 0' // nl // '0.1' // nl)
  call expect_load(d // '/legacy_nan.txt', FKB_ERR_FORMAT, "size 'NaN' is not a number")
  call write_text(d // '/legacy_huge.txt', '3' // nl // 'input 2' // nl // 'dense 1e12' // nl // &
                  'linear 0' // nl // '0.1' // nl)
  call expect_load(d // '/legacy_huge.txt', FKB_ERR_MEMORY, 'must be an integer in')
  call write_text(d // '/legacy_frac.txt', '3' // nl // 'input 2.5' // nl // 'dense 2' // nl // &
                  'linear 0' // nl // '0.1' // nl)
  call expect_load(d // '/legacy_frac.txt', FKB_ERR_FORMAT, 'must be an integer')
  call write_text(d // '/legacy_layer.txt', '3' // nl // 'input 2' // nl // 'conv 2' // nl // &
                  'linear 0' // nl // '0.1' // nl)
  call expect_load(d // '/legacy_layer.txt', FKB_ERR_UNSUPPORTED, "unknown layer 'conv'")
  call write_text(d // '/legacy_gauss.txt', '3' // nl // 'input 2' // nl // 'dense 2' // nl // &
                  'gaussian 0' // nl // '0.1' // nl)
  call expect_load(d // '/legacy_gauss.txt', FKB_ERR_UNSUPPORTED, "activation 'gaussian'")
  call write_text(d // '/legacy_short.txt', '3' // nl // 'input 2' // nl // 'dense 2' // nl // &
                  'linear 0' // nl // '0.1' // nl // '1 2' // nl // '1 2 3' // nl)
  call expect_load(d // '/legacy_short.txt', FKB_ERR_FORMAT, 'expected 4 values, found 3')
  call write_text(d // '/legacy_nolines.txt', '5' // nl // 'input 2' // nl // 'dense 2' // nl)
  call expect_load(d // '/legacy_nolines.txt', FKB_ERR_FORMAT, 'truncated')

  ! Calls on a loaded network: bad shapes and batch sizes leave it working.
  call net%load(d // '/good.fkb')
  x = 1
  call net%predict(x, y_before)
  call net%load(d // '/truncated.fkb', stat=stat_, errmsg=msg_)
  call check(stat_ == FKB_ERR_FORMAT, 'failed load reports')
  call net%predict(x, y)
  call check(all(y == y_before), 'a failed load leaves the loaded network intact')
  call expect_predict_r32(x(1:1, :), y, FKB_ERR_SHAPE, 'input has 1 values per sample, the network takes 2')
  call expect_predict_r32(x, y(1:2, :), FKB_ERR_SHAPE, 'output has 2 values per sample, the network gives 3')
  call expect_predict_r32(x, y(:, 1:3), FKB_ERR_SHAPE, 'output holds 3 samples')
  allocate(empty_x(2, 0), empty_y(3, 0))
  call expect_predict_r32(empty_x, empty_y, FKB_ERR_ARGUMENT, 'batch size must be at least 1')
  call net%predict(x, y)
  call check(all(y == y_before), 'the network still predicts after bad calls')
  ! Strided arrays (a section, an ASSOCIATE name bound to one) give the same results as the
  ! contiguous array: gfortran 12 once passed such an associate name unpacked.
  big = -7
  big(2:3, 1:8:2) = x
  call net%predict(big(2:3, 1:8:2), y)
  call check(all(y == y_before), 'a strided section as x')
  associate (xs => big(2:3, 1:8:2))
    call net%predict(xs, y)
  end associate
  call check(all(y == y_before), 'an associate name bound to a strided section as x')
  ybig = 0
  associate (ys => ybig(1:5:2, 2:5))
    call net%predict(x, ys)
  end associate
  call check(all(ybig(1:5:2, 2:5) == y_before) .and. all(ybig(2:4:2, :) == 0), &
             'a strided section as y, nothing else written')
  call net%save(d // '/no_such_dir/x.fkb', stat=stat_, errmsg=msg_)
  call check(stat_ == FKB_ERR_IO .and. index(msg_, 'no_such_dir') > 0, 'save to a bad path')
  call net%save(d // '/x.fkb', stat=stat_, errmsg=msg_, format='onnx')
  call check(stat_ == FKB_ERR_ARGUMENT, 'unknown save format')
  block
    real(8) :: v(6)
    call net%get_tensor(3_int64, v, stat=stat_, errmsg=msg_)
    call check(stat_ == FKB_ERR_ARGUMENT .and. index(msg_, 'out of range') > 0, &
               'tensor index out of range')
    call net%get_tensor(1_int64, v(1:5), stat=stat_, errmsg=msg_)
    call check(stat_ == FKB_ERR_SHAPE, 'tensor of the wrong size')
  end block
  block
    type(fkb_network) :: empty
    call empty%predict(x, y, stat=stat_, errmsg=msg_)
    call check(stat_ == FKB_ERR_ARGUMENT .and. index(msg_, 'not loaded') > 0, &
               'predict before load')
  end block
  call write_fkb(d // '/gelu.fkb', replace(GOOD, 'activation=relu', 'activation=gelu'), 36)
  call net%load(d // '/gelu.fkb')
  call net%save(d // '/gelu.txt', stat=stat_, errmsg=msg_, format='legacy')
  call check(stat_ == FKB_ERR_UNSUPPORTED .and. index(msg_, 'legacy') > 0, &
             'legacy writer refuses what the original library would misread')
  call finish()

contains

  subroutine expect_load(path, code, text)
    character(len=*), intent(in) :: path, text
    integer, intent(in) :: code
    type(fkb_network) :: n
    integer :: stat
    character(len=1024) :: msg
    msg = ''
    call n%load(path, stat=stat, errmsg=msg)
    call check(stat == code .and. index(msg, text) > 0, 'load ' // path // ': expected ' // &
               fkb_status_name(code) // " with '" // text // "', got " // &
               fkb_status_name(stat) // ': ' // trim(msg))
  end subroutine expect_load

  subroutine strided_refs()
    ! fkb_ref of a strided section is empty (a pointer to a packed copy would dangle): predict
    ! says so; the same values in contiguous arrays work.
    type(fkb_network) :: g
    real(real32), target :: a(2, 4), b(3, 4), s(3, 4), da(3, 4), wide(3, 8)
    type(fkb_ref32) :: ins(2), outs(2)
    integer :: st
    character(len=1024) :: m
    call g%load(d // '/graph.fkb', stat=st)
    a = 0.5
    b = 1
    wide = 1
    m = ''
    ins = [fkb_ref(a), fkb_ref(wide(:, 1:8:2))]
    outs = [fkb_ref(s), fkb_ref(da)]
    call g%predict(ins, outs, stat=st, errmsg=m)
    call check(st == FKB_ERR_ARGUMENT .and. index(m, 'input 2: no array given') > 0, &
               'a strided section in fkb_ref is refused: ' // trim(m))
    ins(2) = fkb_ref(b)
    call g%predict(ins, outs, stat=st, errmsg=m)
    call check(st == FKB_OK .and. all(abs(s - (da + 1)) < 1e-6), 'contiguous references work')
  end subroutine strided_refs

  subroutine graph_case(name, header, code, text)
    ! A broken graph header is refused with its message; the network loaded before is kept.
    character(len=*), intent(in) :: name, header, text
    integer, intent(in) :: code
    integer :: st
    character(len=1024) :: m
    real(real32) :: yy(3, 4)
    call write_fkb(d // '/graph_' // name // '.fkb', header, 36)
    call expect_load(d // '/graph_' // name // '.fkb', code, text)
    m = ''
    call net%load(d // '/graph_' // name // '.fkb', stat=st, errmsg=m)
    call net%predict(x, yy, stat=st)
    call check(st == FKB_OK .and. all(yy == y_before), name // ': the loaded network still works')
  end subroutine graph_case

  subroutine expect_predict_r32(xx, yy, code, text)
    real(real32), intent(in) :: xx(:, :)
    real(real32), intent(inout) :: yy(:, :)
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    integer :: stat
    character(len=1024) :: msg
    msg = ''
    call net%predict(xx, yy, stat=stat, errmsg=msg)
    call check(stat == code .and. index(msg, text) > 0, 'predict: expected ' // &
               fkb_status_name(code) // " with '" // text // "', got: " // trim(msg))
  end subroutine expect_predict_r32

  subroutine write_text(path, text)
    character(len=*), intent(in) :: path, text
    integer :: u
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace')
    write (u) text
    close (u)
  end subroutine write_text

  function replace(s, old, new) result(r)
    character(len=*), intent(in) :: s, old, new
    character(len=:), allocatable :: r
    integer :: i
    i = index(s, old)
    r = s(1:i - 1) // new // s(i + len(old):)
  end function replace

end program test_errors
