!! The execution plan's fusion of "linear Dense, then an Activation layer" (fkb_plan): which
!! pairs fuse, which must not (the Dense's value read elsewhere, a network output, the Dense
!! not linear, an identity layer between), for the plain and the Monte-Carlo plans, and that
!! a fused network computes exactly what the same network computes unfused.
program test_plan
  use iso_fortran_env, only: real32, int32, int64
  use fkb_model, only: fkb_model_t
  use fkb_plan, only: fkb_plan_t, build_plan
  use fkb_io_native, only: read_native
  use fkb, only: fkb_network, fkb_ref, fkb_ref32
  use fkb_testing, only: check, finish, write_fkb
  implicit none
  character, parameter :: nl = new_line('a')
  character(len=*), parameter :: HEAD = 'fkb-model' // nl // 'dtype float32' // nl
  character(len=*), parameter :: D1 = 'layer dense name=d1 units=3 activation=linear ' // &
    'use_bias=1' // nl // 'tensor kernel float32 4,3' // nl // 'tensor bias float32 3' // nl
  character(len=*), parameter :: D2 = 'layer dense name=d2 units=2 activation=linear ' // &
    'use_bias=1' // nl // 'tensor kernel float32 3,2' // nl // 'tensor bias float32 2' // nl
  character(len=1024) :: scratch
  character(len=:), allocatable :: d

  call get_command_argument(1, scratch)
  d = trim(scratch)
  ! Both pairs fuse: two steps, each with its activation.
  call expect('chain', 'input 4' // nl // D1 // 'layer leaky_relu name=a negative_slope=0.2' // &
              nl // D2 // 'layer softmax name=s' // nl, 23 * 4, 2, 2)
  ! The Dense has its own activation: not fused.
  call expect('dense_relu', 'input 4' // nl // replace(D1, 'linear', 'relu') // &
              'layer leaky_relu name=a' // nl, 15 * 4, 2, 0)
  ! The Dense's value is also read by a merge: not fused.
  call expect('two_readers', 'input 4' // nl // D1 // 'layer leaky_relu name=a' // nl // &
              'layer add name=s inputs=d1,a' // nl, 15 * 4, 3, 0)
  ! The Dense's value is a network output: not fused.
  call expect('dense_output', 'input 4' // nl // D1 // 'layer leaky_relu name=a' // nl // &
              'output a,d1' // nl, 15 * 4, 2, 0)
  ! An Activation layer on the input, and one after another Activation: nothing to fuse into.
  call expect('no_dense', 'input 4' // nl // 'layer leaky_relu name=a' // nl // &
              'layer elu name=e' // nl, 0, 2, 0)
  ! Dropout between: skipped at inference, but the pair is not fused (kept simple); in the
  ! Monte-Carlo plan the dropout runs.
  call expect('dropout_between', 'input 4' // nl // D1 // 'layer dropout name=p rate=0.5' // &
              nl // 'layer leaky_relu name=a' // nl, 15 * 4, 2, 0, mc_steps=3)
  call fused_equals_unfused()
  call finish()

contains

  subroutine expect(name, body, data_bytes, n_steps, n_fused, mc_steps)
    character(len=*), intent(in) :: name, body
    integer, intent(in) :: data_bytes, n_steps, n_fused
    integer, intent(in), optional :: mc_steps
    type(fkb_model_t) :: model
    type(fkb_plan_t) :: plan, plan_mc
    integer :: st, s
    character(len=:), allocatable :: msg
    call write_fkb(d // '/plan_' // name // '.fkb', HEAD // body // 'end' // nl, data_bytes)
    call read_native(d // '/plan_' // name // '.fkb', model, st, msg)
    call check(st == 0, name // ': loads')
    if (st /= 0) then
      print '(a)', msg
      return
    end if
    call build_plan(model, .false., plan)
    call build_plan(model, .true., plan_mc)
    call check(size(plan%steps) == n_steps, name // ': steps')
    call check(count([(plan%steps(s)%fused, s=1, size(plan%steps))]) == n_fused, &
               name // ': fused steps')
    if (present(mc_steps)) then
      call check(size(plan_mc%steps) == mc_steps, name // ': Monte-Carlo steps')
    else
      call check(size(plan_mc%steps) == n_steps, name // ': Monte-Carlo steps')
    end if
  end subroutine expect

  subroutine fused_equals_unfused()
    !! The chain above against the same layers with the activations as separate layers
    !! (kept apart by making each Dense's value a second network output).
    type(fkb_network) :: fused, apart
    real(real32), target :: x(4, 5), y(2, 5), y_apart(2, 5), d1v(3, 5), d2v(2, 5)
    real(real32) :: w(23)
    type(fkb_ref32) :: ins(1), outs(3)
    integer :: stat, i
    character(len=512) :: msg
    character(len=*), parameter :: CHAIN = HEAD // 'input 4' // nl // D1 // &
      'layer leaky_relu name=a negative_slope=0.2' // nl // D2 // 'layer softmax name=s' // nl
    w = [(sin(1.7 * i), i = 1, size(w))]   ! weights of both signs, all different
    call write_with_data(d // '/plan_fused.fkb', CHAIN // 'end' // nl, w)
    call write_with_data(d // '/plan_apart.fkb', CHAIN // 'output s,d1,d2' // nl // 'end' // nl, w)
    call fused%load(d // '/plan_fused.fkb', stat=stat, errmsg=msg)
    call check(stat == 0, 'fused network loads')
    call apart%load(d // '/plan_apart.fkb', stat=stat, errmsg=msg)
    call check(stat == 0, 'unfused network loads')
    call random_number(x)
    x = 8 * x - 4
    call fused%predict(x, y, stat=stat)
    call check(stat == 0, 'fused predict')
    ins = [fkb_ref(x)]
    outs = [fkb_ref(y_apart), fkb_ref(d1v), fkb_ref(d2v)]
    call apart%predict(ins, outs, stat=stat)
    call check(stat == 0, 'unfused predict')
    call check(all(y == y_apart), 'fused and unfused give the same bits')
    call check(any(d1v < 0) .and. any(d1v > 0), 'the LeakyReLU sees both signs')
  end subroutine fused_equals_unfused

  subroutine write_with_data(path, header, values)
    !! A .fkb file with the given header and float32 data (the layout write_fkb writes).
    character(len=*), intent(in) :: path, header
    real(real32), intent(in) :: values(:)
    integer :: u
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace')
    write (u) char(137) // 'FKB' // achar(13) // achar(10) // achar(26) // achar(10), 1_int32, &
              0_int32, int(len(header), int64), header, values
    close (u)
  end subroutine write_with_data

  function replace(s, a, b) result(r)
    character(len=*), intent(in) :: s, a, b
    character(len=:), allocatable :: r
    integer :: i
    i = index(s, a)
    r = s(1:i - 1) // b // s(i + len(a):)
  end function replace

end program test_plan
