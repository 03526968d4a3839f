!! Training Functional graphs and last-axis layers on (steps, channels) data against Keras
!! (references from tests/data/make_train_graph_cases.py, computed at test time):
!!
!! * gradients vs tf.GradientTape: max |g - ref| / (|ref| + max|ref|) <= TOL, loss likewise;
!! * one train_on_batch step of Adam and of SGD with momentum vs Keras' train_on_batch, and a
!!   50-step Adam curve: every loss |l - ref| <= TOL |ref|, the tensors max|w - ref| /
!!   max|ref| <= TOL; TOL = 1e-12 (float64), 1e-5 (float32);
!! * saving after 25 steps, loading and continuing gives the uninterrupted run bit for bit;
!! * wrong number of target arrays, a target shape mismatch: errors, nothing changed; graphs
!!   with a conv1d or lstm layer: compile refused naming the layer.
program test_training_graphs
  use iso_fortran_env, only: real64, int64
  use fkb
  use fkb_testing, only: check, finish
  implicit none

  type :: arr_t
    real(real64), allocatable :: a(:, :)
  end type arr_t

  character(len=1024) :: dir, scratch
  character(len=2048) :: line
  character(len=:), allocatable :: name, dtype, loss
  integer :: u, ios, b, has_w
  integer(int64), allocatable :: ins(:), tgs(:)
  real(real64) :: tol

  call get_command_argument(1, dir)
  call get_command_argument(2, scratch)
  open(newunit=u, file=trim(dir) // '/train_cases.txt', status='old', action='read')
  do
    read(u, '(a)', iostat=ios) line
    if (ios /= 0) exit
    call parse(trim(line))
    tol = merge(1e-12_real64, 1e-5_real64, dtype == 'float64')
    call gradients_check()
    call step_check('adam learning_rate=0.01', 'adam')
    call step_check('sgd learning_rate=0.05 momentum=0.9', 'sgd')
    call curve_and_resume()
    if (name(1:len('two_in_three_out')) == 'two_in_three_out') call bad_calls()
  end do
  close(u)
  call refused('bad_conv1d', "'conv'")
  call refused('bad_lstm', "'lstm'")
  call finish()

contains

  subroutine parse(text)
    character(len=*), intent(in) :: text
    character(len=256) :: f(6)
    integer :: k, p, q
    ! six space-separated fields (list-directed input would split the size lists at commas)
    p = 0
    do k = 1, 6
      p = p + verify(text(p + 1:), ' ')
      q = p + index(text(p:) // ' ', ' ') - 2
      f(k) = text(p:q)
      p = q
    end do
    name = trim(f(1))
    dtype = trim(f(2))
    read(f(3), *) b
    read(f(4), *) has_w
    ins = ints(trim(f(5)))
    tgs = ints(trim(f(6)))
    loss = trim(adjustl(text(p + 1:)))   ! the loss spec: the rest of the line
  end subroutine parse

  function ints(t) result(v)
    character(len=*), intent(in) :: t
    integer(int64), allocatable :: v(:)
    integer :: k, n
    n = count([(t(k:k) == ',', k=1, len(t))]) + 1
    allocate(v(n))
    read(t, *) v
  end function ints

  function read_all(path) result(v)
    character(len=*), intent(in) :: path
    real(real64), allocatable :: v(:)
    integer :: un, sz
    open(newunit=un, file=path, access='stream', form='unformatted', status='old', &
         action='read')
    inquire(unit=un, size=sz)
    allocate(v(sz / 8))
    read(un) v
    close(un)
  end function read_all

  subroutine batch(k, xs, ts, w)
    ! Batch k (0-based) of the case: per input, per output, sample weights (or none).
    integer, intent(in) :: k
    type(arr_t), allocatable, intent(out) :: xs(:), ts(:)
    real(real64), allocatable, intent(out) :: w(:)
    real(real64), allocatable :: all(:), m(:, :)
    integer(int64) :: off
    integer :: j
    all = read_all(trim(dir) // '/' // name // '.x.bin')
    m = reshape(all, [sum(ins), size(all, kind=int64) / sum(ins)])
    allocate(xs(size(ins)))
    off = 0
    do j = 1, size(ins)
      xs(j)%a = m(off + 1:off + ins(j), k * b + 1:(k + 1) * b)
      off = off + ins(j)
    end do
    all = read_all(trim(dir) // '/' // name // '.t.bin')
    m = reshape(all, [sum(tgs), size(all, kind=int64) / sum(tgs)])
    allocate(ts(size(tgs)))
    off = 0
    do j = 1, size(tgs)
      ts(j)%a = m(off + 1:off + tgs(j), k * b + 1:(k + 1) * b)
      off = off + tgs(j)
    end do
    if (has_w == 1) then
      all = read_all(trim(dir) // '/' // name // '.w.bin')
      w = all(k * b + 1:(k + 1) * b)
    else
      allocate(w(0))
    end if
  end subroutine batch

  subroutine step(net, k, mode, l, g, stat, msg)
    ! mode 1 train_on_batch, 2 gradients, 3 evaluate, on batch k.
    type(fkb_network), intent(inout) :: net
    integer, intent(in) :: k, mode
    real(real64), intent(out) :: l
    real(real64), intent(out) :: g(:)
    integer, intent(out) :: stat
    character(len=*), intent(inout) :: msg
    type(arr_t), allocatable, target :: xs(:), ts(:)
    real(real64), allocatable :: w(:)
    type(fkb_ref64), allocatable :: rx(:), rt(:)
    integer :: j
    call batch(k, xs, ts, w)
    allocate(rx(size(xs)), rt(size(ts)))
    do j = 1, size(xs)
      rx(j) = fkb_ref(xs(j)%a)
    end do
    do j = 1, size(ts)
      rt(j) = fkb_ref(ts(j)%a)
    end do
    select case (mode)
    case (1)
      if (size(w) > 0) then
        call net%train_on_batch(rx, rt, l, stat=stat, errmsg=msg, sample_weight=w)
      else
        call net%train_on_batch(rx, rt, l, stat=stat, errmsg=msg)
      end if
    case (2)
      if (size(w) > 0) then
        call net%gradients(rx, rt, l, g, stat=stat, errmsg=msg, sample_weight=w)
      else
        call net%gradients(rx, rt, l, g, stat=stat, errmsg=msg)
      end if
    case default
      if (size(w) > 0) then
        call net%evaluate(rx, rt, l, stat=stat, errmsg=msg, sample_weight=w)
      else
        call net%evaluate(rx, rt, l, stat=stat, errmsg=msg)
      end if
    end select
  end subroutine step

  function weights(net) result(v)
    type(fkb_network), intent(inout) :: net
    real(real64), allocatable :: v(:), t(:)
    integer(int64) :: i
    allocate(v(0))
    do i = 1, net%n_tensors()
      allocate(t(net%tensor_size(i)))
      call net%get_tensor(i, t)
      v = [v, t]
      deallocate(t)
    end do
  end function weights

  subroutine open_compiled(net, optimizer)
    type(fkb_network), intent(inout) :: net
    character(len=*), intent(in) :: optimizer
    integer :: stat
    character(len=512) :: msg
    msg = ''
    call net%load(trim(dir) // '/' // name // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, name // ': load: ' // trim(msg))
    call net%compile(optimizer, loss, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, name // ': compile ' // loss // ': ' // trim(msg))
  end subroutine open_compiled

  subroutine gradients_check()
    type(fkb_network) :: net
    real(real64), allocatable :: ref(:), g(:)
    real(real64) :: l, worst
    integer :: stat
    character(len=512) :: msg
    character(len=32) :: txt
    call open_compiled(net, 'sgd')
    ref = read_all(trim(dir) // '/' // name // '.grad.bin')
    allocate(g(size(ref) - 1))
    msg = ''
    call step(net, 0, 2, l, g, stat, msg)
    call check(stat == FKB_OK, name // ': gradients: ' // trim(msg))
    worst = maxval(abs(g - ref(2:)) / (abs(ref(2:)) + maxval(abs(ref(2:)))))
    write(txt, '(es10.3)') worst
    call check(worst <= tol, name // ': gradients vs tf.GradientTape, max |dg|/(|g|+max|g|) = ' &
               // trim(txt))
    write(txt, '(es10.3)') abs(l - ref(1)) / abs(ref(1))
    call check(abs(l - ref(1)) <= tol * abs(ref(1)), name // ': loss with the gradients, &
               &relative error ' // trim(txt))
    print '(a,a,es10.3)', name, ' gradients: ', worst
  end subroutine gradients_check

  subroutine step_check(optimizer, key)
    character(len=*), intent(in) :: optimizer, key
    type(fkb_network) :: net
    real(real64), allocatable :: ref(:), w(:)
    real(real64) :: l, g(0), worst
    integer :: stat
    character(len=512) :: msg
    character(len=32) :: txt
    call open_compiled(net, optimizer)
    ref = read_all(trim(dir) // '/' // name // '.' // key // '.bin')
    msg = ''
    call step(net, 0, 1, l, g, stat, msg)
    call check(stat == FKB_OK, name // ': train_on_batch ' // key // ': ' // trim(msg))
    w = weights(net)
    worst = maxval(abs(w - ref(2:))) / maxval(abs(ref(2:)))
    write(txt, '(es10.3)') worst
    call check(size(w) == size(ref) - 1 .and. worst <= tol, name // ': one ' // key // &
               ' step vs Keras train_on_batch, max|dw|/max|w| = ' // trim(txt))
    call check(abs(l - ref(1)) <= tol * abs(ref(1)), name // ': ' // key // ' step loss')
    print '(a,a,a,es10.3)', name, ' one step ', key, worst
  end subroutine step_check

  subroutine curve_and_resume()
    type(fkb_network) :: net, net2
    real(real64), allocatable :: ref(:), w(:), w2(:)
    real(real64) :: l(50), l2(50), g(0), worst, worst_l
    integer :: s, stat
    character(len=512) :: msg
    character(len=32) :: txt
    character(len=:), allocatable :: path
    call open_compiled(net, 'adam learning_rate=0.001')
    ref = read_all(trim(dir) // '/' // name // '.curve.bin')
    msg = ''
    do s = 1, 50
      call step(net, mod(s - 1, 4), 1, l(s), g, stat, msg)
      if (stat /= FKB_OK) exit
    end do
    call check(stat == FKB_OK, name // ': curve: ' // trim(msg))
    w = weights(net)
    worst_l = maxval(abs(l - ref(1:50)) / abs(ref(1:50)))
    worst = maxval(abs(w - ref(51:))) / maxval(abs(ref(51:)))
    write(txt, '(2es10.3)') worst_l, worst
    call check(worst_l <= tol .and. worst <= tol, name // ': 50 Adam steps vs Keras (losses, &
               &weights): ' // trim(txt))
    print '(a,a,2es10.3)', name, ' curve (losses, weights): ', worst_l, worst
    ! Interrupted at step 25: save, load into another network, continue.
    path = trim(scratch) // '/' // name // '_resume.fkb'
    call open_compiled(net2, 'adam learning_rate=0.001')
    do s = 1, 25
      call step(net2, mod(s - 1, 4), 1, l2(s), g, stat, msg)
    end do
    call net2%save(path, stat=stat, errmsg=msg)
    call check(stat == FKB_OK, name // ': save mid-training: ' // trim(msg))
    call net2%load(path, stat=stat, errmsg=msg)
    call check(stat == FKB_OK .and. net2%is_compiled(), name // ': load compiled: ' // trim(msg))
    do s = 26, 50
      call step(net2, mod(s - 1, 4), 1, l2(s), g, stat, msg)
    end do
    w2 = weights(net2)
    call check(all(l2 == l) .and. all(w2 == w), name // ': save -> load -> continue is bit-&
               &identical to the uninterrupted run')
  end subroutine curve_and_resume

  subroutine bad_calls()
    type(fkb_network) :: net
    type(arr_t), allocatable, target :: xs(:), ts(:)
    real(real64), allocatable :: w(:), before(:), bad(:, :)
    type(fkb_ref64) :: rx(2), rt2(2), rt3(3)
    real(real64) :: l
    integer :: stat
    character(len=512) :: msg
    call open_compiled(net, 'adam')
    call batch(0, xs, ts, w)
    rx(1) = fkb_ref(xs(1)%a)
    rx(2) = fkb_ref(xs(2)%a)
    rt2(1) = fkb_ref(ts(1)%a)
    rt2(2) = fkb_ref(ts(2)%a)
    before = weights(net)
    msg = ''
    call net%train_on_batch(rx, rt2, l, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, '3 output(s), got 2 target') > 0, &
               'two target arrays for three outputs refused: ' // trim(msg))
    allocate(bad(size(ts(2)%a, 1) + 1, b))
    bad = 0
    rt3(1) = fkb_ref(ts(1)%a)
    rt3(2) = fkb_ref(bad)
    rt3(3) = fkb_ref(ts(3)%a)
    msg = ''
    call net%train_on_batch(rx, rt3, l, stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_SHAPE .and. index(msg, "output 2 ('o2')") > 0, &
               'target shape mismatch refused naming the output: ' // trim(msg))
    msg = ''
    call net%train_on_batch(xs(1)%a, ts(1)%a, l, stat=stat, errmsg=msg)
    call check(stat /= FKB_OK .and. index(msg, '2 input(s), got 1') > 0, &
               'single-array train_on_batch on a two-input network refused: ' // trim(msg))
    call check(all(weights(net) == before) .and. net%iterations() == 0, &
               'nothing changed by the refused calls')
    msg = ''
    call net%compile('adam', 'mse;mae', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, '2 losses') > 0, &
               'two losses for three outputs refused: ' // trim(msg))
    call net%compile('adam', 'mse', stat=stat, errmsg=msg, loss_weights=[1.0_real64, 2.0_real64])
    call check(stat == FKB_ERR_ARGUMENT .and. index(msg, 'loss_weights') > 0, &
               'two loss weights for three outputs refused: ' // trim(msg))
    call check(net%is_compiled() .and. net%n_targets(2) == 4, 'the compiled state is kept')
  end subroutine bad_calls

  subroutine refused(case, layer)
    character(len=*), intent(in) :: case, layer
    type(fkb_network) :: net
    integer :: stat
    character(len=512) :: msg
    msg = ''
    call net%load(trim(dir) // '/' // case // '.fkb', stat=stat, errmsg=msg)
    call check(stat == FKB_OK, case // ': load: ' // trim(msg))
    call net%compile('adam', 'mse', stat=stat, errmsg=msg)
    call check(stat == FKB_ERR_UNSUPPORTED .and. index(msg, layer) > 0 .and. &
               .not. net%is_compiled(), case // ': compile refused naming ' // layer // ': ' // &
               trim(msg))
  end subroutine refused

end program test_training_graphs
