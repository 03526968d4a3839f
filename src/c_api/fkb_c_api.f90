!! The C API (include/fkb/fkb.h): bind(C) shims over the Fortran engine. They translate
!! handles, C strings and pointer+size arrays, check for NULL, and turn stat/errmsg into an
!! fkb_status plus the thread's last-error text. Nothing is computed here.
module fkb_c_api
  use iso_c_binding, only: c_ptr, c_int, c_int64_t, c_char, c_float, c_double, c_size_t, &
                           c_null_ptr, c_null_char, c_associated, c_f_pointer, c_loc, &
                           c_funptr, c_associated, c_f_procpointer
  use iso_fortran_env, only: int64, real64
  use fkb_network_m, only: fkb_network, fkb_rnn_state
  use fkb_refs, only: fkb_ref32, fkb_ref64
  use fkb_ensemble_m, only: fkb_ensemble
  use fkb_custom_loss_m, only: fkb_custom_loss
  use fkb_errors, only: FKB_OK, FKB_ERR_ARGUMENT, FKB_ERR_MEMORY
  use fkb_blas, only: set_deterministic, is_deterministic
  implicit none
  private

  integer, parameter :: MSG_LEN = 4000

  !> A custom loss given by a C callback (fkb_loss_callback in fkb.h) and its user data.
  type, extends(fkb_custom_loss) :: c_loss
    type(c_funptr) :: fn
    type(c_ptr) :: user = c_null_ptr
  contains
    procedure :: evaluate => c_loss_evaluate
  end type c_loss

  abstract interface
    integer(c_int) function loss_callback(y, t, n_out, batch, w, value, grad, user) bind(c)
      import :: c_int, c_int64_t, c_double, c_ptr
      real(c_double), intent(in) :: y(*), t(*)
      integer(c_int64_t), value :: n_out, batch
      type(c_ptr), value :: w
      real(c_double), intent(out) :: value
      real(c_double), intent(out) :: grad(*)
      type(c_ptr), value :: user
    end function loss_callback
  end interface

  interface
    subroutine c_set_last_error(msg, n) bind(c, name='fkb_c_set_last_error')
      import :: c_char, c_size_t
      character(kind=c_char), intent(in) :: msg(*)
      integer(c_size_t), value :: n
    end subroutine c_set_last_error
    pure integer(c_size_t) function c_strlen(s) bind(c, name='strlen')
      import :: c_ptr, c_size_t
      type(c_ptr), value, intent(in) :: s
    end function c_strlen
  end interface

contains

  integer(c_int) function fail(code, text)
    ! Records text as the last error and returns code.
    integer, intent(in) :: code
    character(len=*), intent(in) :: text
    call c_set_last_error(text, len(text, c_size_t))
    fail = int(code, c_int)
  end function fail

  integer(c_int) function finish(stat, msg)
    integer, intent(in) :: stat
    character(len=*), intent(in) :: msg
    if (stat == FKB_OK) then
      finish = FKB_OK
    else
      finish = fail(stat, trim(msg))
    end if
  end function finish

  function c_string(p) result(s)
    ! A Fortran copy of a NUL-terminated C string.
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer(c_size_t) :: n, i
    n = c_strlen(p)
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function c_string

  logical function get_net(handle, net)
    ! The network behind a handle; false if the handle is NULL.
    type(c_ptr), intent(in) :: handle
    type(fkb_network), pointer, intent(out) :: net
    net => null()
    get_net = c_associated(handle)
    if (get_net) call c_f_pointer(handle, net)
  end function get_net

  integer(c_int) function c_network_load(path, out) bind(c, name='fkb_network_load')
    type(c_ptr), value :: path, out
    type(c_ptr), pointer :: outp
    type(fkb_network), pointer :: net
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. c_associated(out)) then
      c_network_load = fail(FKB_ERR_ARGUMENT, 'fkb_network_load: out is NULL')
      return
    end if
    call c_f_pointer(out, outp)
    outp = c_null_ptr
    if (.not. c_associated(path)) then
      c_network_load = fail(FKB_ERR_ARGUMENT, 'fkb_network_load: path is NULL')
      return
    end if
    allocate(net, stat=stat)
    if (stat /= 0) then
      c_network_load = fail(FKB_ERR_MEMORY, 'fkb_network_load: out of memory')
      return
    end if
    msg = ''
    call net%load(c_string(path), stat=stat, errmsg=msg)
    if (stat /= FKB_OK) then
      deallocate(net)
      c_network_load = fail(stat, trim(msg))
      return
    end if
    outp = c_loc(net)
    c_network_load = FKB_OK
  end function c_network_load

  integer(c_int) function c_network_save(handle, path) bind(c, name='fkb_network_save')
    type(c_ptr), value :: handle, path
    c_network_save = save_as(handle, path, 'fkb')
  end function c_network_save

  integer(c_int) function c_network_save_legacy(handle, path) &
      bind(c, name='fkb_network_save_legacy')
    type(c_ptr), value :: handle, path
    c_network_save_legacy = save_as(handle, path, 'legacy')
  end function c_network_save_legacy

  integer(c_int) function save_as(handle, path, format)
    type(c_ptr), intent(in) :: handle, path
    character(len=*), intent(in) :: format
    type(fkb_network), pointer :: net
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net)) then
      save_as = fail(FKB_ERR_ARGUMENT, 'fkb_network_save: network is NULL')
    else if (.not. c_associated(path)) then
      save_as = fail(FKB_ERR_ARGUMENT, 'fkb_network_save: path is NULL')
    else
      msg = ''
      call net%save(c_string(path), stat=stat, errmsg=msg, format=format)
      save_as = finish(stat, msg)
    end if
  end function save_as

  subroutine c_network_free(handle_ref) bind(c, name='fkb_network_free')
    type(c_ptr), value :: handle_ref
    type(c_ptr), pointer :: handle
    type(fkb_network), pointer :: net
    if (.not. c_associated(handle_ref)) return
    call c_f_pointer(handle_ref, handle)
    if (get_net(handle, net)) deallocate(net)
    handle = c_null_ptr
  end subroutine c_network_free

  integer(c_int64_t) function c_network_n_inputs(handle) bind(c, name='fkb_network_n_inputs')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_n_inputs = -1
    if (get_net(handle, net)) c_network_n_inputs = net%n_inputs()
  end function c_network_n_inputs

  integer(c_int64_t) function c_network_n_outputs(handle) bind(c, name='fkb_network_n_outputs')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_n_outputs = -1
    if (get_net(handle, net)) c_network_n_outputs = net%n_outputs()
  end function c_network_n_outputs

  integer(c_int) function c_network_dtype(handle) bind(c, name='fkb_network_dtype')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_dtype = 0
    if (get_net(handle, net)) c_network_dtype = net%dtype()
  end function c_network_dtype

  integer(c_int) function c_network_predict(handle, x, batch, y) &
      bind(c, name='fkb_network_predict')
    type(c_ptr), value :: handle, x, y
    integer(c_int64_t), value :: batch
    type(c_ptr), target :: xs(1), ys(1)
    xs(1) = x
    ys(1) = y
    c_network_predict = predict_any(handle, 1, c_loc(xs), batch, 1, c_loc(ys), c_null_ptr, &
                                    .false., 'fkb_network_predict')
  end function c_network_predict

  integer(c_int) function c_network_predict_f64(handle, x, batch, y) &
      bind(c, name='fkb_network_predict_f64')
    type(c_ptr), value :: handle, x, y
    integer(c_int64_t), value :: batch
    type(c_ptr), target :: xs(1), ys(1)
    xs(1) = x
    ys(1) = y
    c_network_predict_f64 = predict_any(handle, 1, c_loc(xs), batch, 1, c_loc(ys), c_null_ptr, &
                                        .true., 'fkb_network_predict_f64')
  end function c_network_predict_f64

  integer(c_int) function c_network_predict_multi(handle, n_in, xs, batch, n_out, ys, state) &
      bind(c, name='fkb_network_predict_multi')
    type(c_ptr), value :: handle, xs, ys, state
    integer(c_int), value :: n_in, n_out
    integer(c_int64_t), value :: batch
    c_network_predict_multi = predict_any(handle, n_in, xs, batch, n_out, ys, state, .false., &
                                          'fkb_network_predict_multi')
  end function c_network_predict_multi

  integer(c_int) function c_network_predict_multi_f64(handle, n_in, xs, batch, n_out, ys, &
                                                      state) &
      bind(c, name='fkb_network_predict_multi_f64')
    type(c_ptr), value :: handle, xs, ys, state
    integer(c_int), value :: n_in, n_out
    integer(c_int64_t), value :: batch
    c_network_predict_multi_f64 = predict_any(handle, n_in, xs, batch, n_out, ys, state, &
                                              .true., 'fkb_network_predict_multi_f64')
  end function c_network_predict_multi_f64

  integer(c_int) function predict_any(handle, n_in, xs, batch, n_out, ys, state, f64, fname)
    ! Every predict entry point: xs/ys are C arrays of n_in/n_out data pointers, each array
    ! holding batch samples of its input's/output's size; state may be NULL.
    type(c_ptr), intent(in) :: handle, xs, ys, state
    integer(c_int), intent(in) :: n_in, n_out
    integer(c_int64_t), intent(in) :: batch
    logical, intent(in) :: f64
    character(len=*), intent(in) :: fname
    type(fkb_network), pointer :: net
    type(fkb_rnn_state), pointer :: rs
    type(c_ptr), pointer :: px(:), py(:)
    type(fkb_ref32), allocatable :: r32x(:), r32y(:)
    type(fkb_ref64), allocatable :: r64x(:), r64y(:)
    type(fkb_ref32) :: s32x(1), s32y(1)
    type(fkb_ref64) :: s64x(1), s64y(1)
    character(len=:), allocatable :: msg
    integer :: stat, k
    integer(int64) :: rows
    predict_any = FKB_OK
    if (.not. get_net(handle, net)) then
      predict_any = fail(FKB_ERR_ARGUMENT, fname // ': network is NULL')
    else if (.not. (c_associated(xs) .and. c_associated(ys))) then
      predict_any = fail(FKB_ERR_ARGUMENT, fname // ': x or y is NULL')
    else if (batch < 1) then
      predict_any = fail(FKB_ERR_ARGUMENT, fname // ': batch must be at least 1')
    else if (n_in /= net%input_count() .or. n_out /= net%output_count()) then
      predict_any = fail(FKB_ERR_ARGUMENT, fname // ': the network has ' // &
                         itoa(net%input_count()) // ' input(s) and ' // &
                         itoa(net%output_count()) // ' output(s), got ' // itoa(int(n_in)) // &
                         ' and ' // itoa(int(n_out)))
    end if
    if (predict_any /= FKB_OK) return
    call c_f_pointer(xs, px, [n_in])
    call c_f_pointer(ys, py, [n_out])
    do k = 1, n_in
      if (.not. c_associated(px(k))) predict_any = fail(FKB_ERR_ARGUMENT, fname // ': input ' &
                                                        // itoa(k - 1) // ' is NULL')
    end do
    do k = 1, n_out
      if (.not. c_associated(py(k))) predict_any = fail(FKB_ERR_ARGUMENT, fname // &
                                                        ': output ' // itoa(k - 1) // ' is NULL')
    end do
    if (predict_any /= FKB_OK) return
    rs => null()
    if (c_associated(state)) call c_f_pointer(state, rs)
    ! One input and one output (the common case) go through fixed-size arrays, and msg stays
    ! unallocated unless there is an error: a steady-state call allocates nothing.
    if (f64) then
      if (n_in == 1 .and. n_out == 1) then
        call ref64(px(1), net%input_size(1), s64x(1))
        call ref64(py(1), net%output_size(1), s64y(1))
        call run64(s64x, s64y)
      else
        allocate(r64x(n_in), r64y(n_out))
        do k = 1, n_in
          call ref64(px(k), net%input_size(k), r64x(k))
        end do
        do k = 1, n_out
          call ref64(py(k), net%output_size(k), r64y(k))
        end do
        call run64(r64x, r64y)
      end if
    else
      if (n_in == 1 .and. n_out == 1) then
        call ref32(px(1), net%input_size(1), s32x(1))
        call ref32(py(1), net%output_size(1), s32y(1))
        call run32(s32x, s32y)
      else
        allocate(r32x(n_in), r32y(n_out))
        do k = 1, n_in
          call ref32(px(k), net%input_size(k), r32x(k))
        end do
        do k = 1, n_out
          call ref32(py(k), net%output_size(k), r32y(k))
        end do
        call run32(r32x, r32y)
      end if
    end if
    if (stat /= FKB_OK) then
      if (.not. allocated(msg)) msg = 'failed'
      predict_any = finish(stat, msg)
    end if
  contains
    subroutine ref32(p, r, ref)
      type(c_ptr), intent(in) :: p
      integer(int64), intent(in) :: r
      type(fkb_ref32), intent(out) :: ref
      rows = max(r, 0_int64)
      call c_f_pointer(p, ref%p, [rows * batch])
      ref%rows = rows
      ref%cols = batch
    end subroutine ref32
    subroutine ref64(p, r, ref)
      type(c_ptr), intent(in) :: p
      integer(int64), intent(in) :: r
      type(fkb_ref64), intent(out) :: ref
      rows = max(r, 0_int64)
      call c_f_pointer(p, ref%p, [rows * batch])
      ref%rows = rows
      ref%cols = batch
    end subroutine ref64
    subroutine run32(a, b)
      type(fkb_ref32), intent(in) :: a(:), b(:)
      if (associated(rs)) then
        call net%predict_core(stat, msg, xs32=a, ys32=b, state=rs)
      else
        call net%predict_core(stat, msg, xs32=a, ys32=b)
      end if
    end subroutine run32
    subroutine run64(a, b)
      type(fkb_ref64), intent(in) :: a(:), b(:)
      if (associated(rs)) then
        call net%predict_core(stat, msg, xs64=a, ys64=b, state=rs)
      else
        call net%predict_core(stat, msg, xs64=a, ys64=b)
      end if
    end subroutine run64
  end function predict_any

  integer(c_int) function c_network_input_count(handle) bind(c, name='fkb_network_input_count')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_input_count = -1
    if (get_net(handle, net)) c_network_input_count = net%input_count()
  end function c_network_input_count

  integer(c_int) function c_network_output_count(handle) &
      bind(c, name='fkb_network_output_count')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_output_count = -1
    if (get_net(handle, net)) c_network_output_count = net%output_count()
  end function c_network_output_count

  integer(c_int64_t) function c_network_input_size(handle, i) &
      bind(c, name='fkb_network_input_size')
    type(c_ptr), value :: handle
    integer(c_int), value :: i
    type(fkb_network), pointer :: net
    c_network_input_size = -1
    if (get_net(handle, net)) c_network_input_size = net%input_size(int(i) + 1)
  end function c_network_input_size

  integer(c_int64_t) function c_network_output_size(handle, i) &
      bind(c, name='fkb_network_output_size')
    type(c_ptr), value :: handle
    integer(c_int), value :: i
    type(fkb_network), pointer :: net
    c_network_output_size = -1
    if (get_net(handle, net)) c_network_output_size = net%output_size(int(i) + 1)
  end function c_network_output_size

  integer(c_int) function c_network_io_shape(handle, output, i, dims, max_rank) &
      bind(c, name='fkb_network_io_shape')
    type(c_ptr), value :: handle, dims
    integer(c_int), value :: output, i, max_rank
    type(fkb_network), pointer :: net
    integer(c_int64_t), pointer :: d(:)
    integer(int64), allocatable :: shape(:)
    c_network_io_shape = -1
    if (.not. get_net(handle, net)) return
    if (output /= 0) then
      shape = net%output_shape(int(i) + 1)
    else
      shape = net%input_shape(int(i) + 1)
    end if
    if (size(shape) == 0) return
    c_network_io_shape = size(shape)
    if (c_associated(dims) .and. max_rank >= size(shape)) then
      call c_f_pointer(dims, d, [size(shape)])
      d = shape
    end if
  end function c_network_io_shape

  integer(c_int) function c_network_io_name(handle, output, i, buf, cap) &
      bind(c, name='fkb_network_io_name')
    type(c_ptr), value :: handle, buf
    integer(c_int), value :: output, i
    integer(c_size_t), value :: cap
    type(fkb_network), pointer :: net
    character(kind=c_char), pointer :: b(:)
    character(len=:), allocatable :: name
    integer :: k
    c_network_io_name = -1
    if (.not. get_net(handle, net)) return
    if (output /= 0) then
      if (i < 0 .or. i >= net%output_count()) return
      name = net%output_name(int(i) + 1)
    else
      if (i < 0 .or. i >= net%input_count()) return
      name = net%input_name(int(i) + 1)
    end if
    c_network_io_name = len(name)
    if (.not. c_associated(buf) .or. cap < len(name) + 1) return
    call c_f_pointer(buf, b, [len(name) + 1])
    do k = 1, len(name)
      b(k) = name(k:k)
    end do
    b(len(name) + 1) = c_null_char
  end function c_network_io_name

  type(c_ptr) function c_rnn_state_create() bind(c, name='fkb_rnn_state_create')
    type(fkb_rnn_state), pointer :: rs
    integer :: ios
    c_rnn_state_create = c_null_ptr
    allocate(rs, stat=ios)
    if (ios == 0) c_rnn_state_create = c_loc(rs)
  end function c_rnn_state_create

  subroutine c_rnn_state_reset(state) bind(c, name='fkb_rnn_state_reset')
    type(c_ptr), value :: state
    type(fkb_rnn_state), pointer :: rs
    if (.not. c_associated(state)) return
    call c_f_pointer(state, rs)
    call rs%reset()
  end subroutine c_rnn_state_reset

  subroutine c_rnn_state_free(state) bind(c, name='fkb_rnn_state_free')
    type(c_ptr), intent(inout) :: state
    type(fkb_rnn_state), pointer :: rs
    if (.not. c_associated(state)) return
    call c_f_pointer(state, rs)
    deallocate(rs)
    state = c_null_ptr
  end subroutine c_rnn_state_free

  type(c_ptr) function c_network_description(handle) bind(c, name='fkb_network_description')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    character(len=:), pointer :: text
    c_network_description = c_null_ptr
    if (.not. get_net(handle, net)) return
    text => net%description_c()
    if (associated(text)) c_network_description = c_loc(text(1:1))
  end function c_network_description

  integer(c_int64_t) function c_network_n_tensors(handle) bind(c, name='fkb_network_n_tensors')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_n_tensors = -1
    if (get_net(handle, net)) c_network_n_tensors = net%n_tensors()
  end function c_network_n_tensors

  integer(c_int64_t) function c_network_tensor_size(handle, index) &
      bind(c, name='fkb_network_tensor_size')
    type(c_ptr), value :: handle
    integer(c_int64_t), value :: index
    type(fkb_network), pointer :: net
    c_network_tensor_size = -1
    if (get_net(handle, net)) c_network_tensor_size = net%tensor_size(index + 1)
  end function c_network_tensor_size

  integer(c_int) function c_network_get_tensor(handle, index, out, count) &
      bind(c, name='fkb_network_get_tensor')
    type(c_ptr), value :: handle, out
    integer(c_int64_t), value :: index, count
    type(fkb_network), pointer :: net
    real(c_double), pointer :: values(:)
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net) .or. .not. c_associated(out) .or. count < 0) then
      c_network_get_tensor = fail(FKB_ERR_ARGUMENT, &
                                  'fkb_network_get_tensor: NULL argument or negative count')
      return
    end if
    call c_f_pointer(out, values, [count])
    msg = ''
    call net%get_tensor(index + 1, values, stat=stat, errmsg=msg)
    c_network_get_tensor = finish(stat, msg)
  end function c_network_get_tensor

  integer(c_int) function c_network_set_tensor(handle, index, values_p, count) &
      bind(c, name='fkb_network_set_tensor')
    type(c_ptr), value :: handle, values_p
    integer(c_int64_t), value :: index, count
    type(fkb_network), pointer :: net
    real(c_double), pointer :: values(:)
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net) .or. .not. c_associated(values_p) .or. count < 0) then
      c_network_set_tensor = fail(FKB_ERR_ARGUMENT, &
                                  'fkb_network_set_tensor: NULL argument or negative count')
      return
    end if
    call c_f_pointer(values_p, values, [count])
    msg = ''
    call net%set_tensor(index + 1, values, stat=stat, errmsg=msg)
    c_network_set_tensor = finish(stat, msg)
  end function c_network_set_tensor

  subroutine c_set_deterministic(on) bind(c, name='fkb_set_deterministic')
    integer(c_int), value :: on
    call set_deterministic(on /= 0)
  end subroutine c_set_deterministic

  integer(c_int) function c_is_deterministic() bind(c, name='fkb_is_deterministic')
    c_is_deterministic = merge(1_c_int, 0_c_int, is_deterministic())
  end function c_is_deterministic

  ! ---- training ----

  integer(c_int) function c_network_compile(handle, optimizer, loss) &
      bind(c, name='fkb_network_compile')
    type(c_ptr), value :: handle, optimizer, loss
    type(fkb_network), pointer :: net
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net) .or. .not. c_associated(optimizer) .or. &
        .not. c_associated(loss)) then
      c_network_compile = fail(FKB_ERR_ARGUMENT, 'fkb_network_compile: NULL argument')
      return
    end if
    msg = ''
    call net%compile(c_string(optimizer), c_string(loss), stat=stat, errmsg=msg)
    c_network_compile = finish(stat, msg)
  end function c_network_compile

  subroutine c_loss_evaluate(self, y, t, w, value, grad, stat, msg)
    class(c_loss), intent(inout) :: self
    real(real64), intent(in) :: y(:, :), t(:, :), w(:)
    real(real64), intent(out) :: value
    real(real64), intent(out) :: grad(:, :)
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    procedure(loss_callback), pointer :: fn
    real(c_double), allocatable, target :: wc(:)
    type(c_ptr) :: wp
    integer(c_int) :: rc
    call c_f_procpointer(self%fn, fn)
    wp = c_null_ptr
    if (size(w) > 0) then
      wc = w
      wp = c_loc(wc)
    end if
    value = 0
    grad = 0
    rc = fn(y, t, size(y, 1, c_int64_t), size(y, 2, c_int64_t), wp, value, grad, self%user)
    stat = int(rc)
    if (rc /= 0) msg = 'callback returned ' // trim(adjustl(itoa(int(rc))))
  end subroutine c_loss_evaluate

  function itoa(i) result(s)
    integer, intent(in) :: i
    character(len=:), allocatable :: s
    character(len=12) :: buf
    write (buf, '(i0)') i
    s = trim(buf)
  end function itoa

  integer(c_int) function c_network_compile_custom(handle, optimizer, fn, user) &
      bind(c, name='fkb_network_compile_custom')
    type(c_ptr), value :: handle, optimizer, user
    type(c_funptr), value :: fn
    type(fkb_network), pointer :: net
    type(c_loss) :: custom
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net) .or. .not. c_associated(optimizer) .or. &
        .not. c_associated(fn)) then
      c_network_compile_custom = fail(FKB_ERR_ARGUMENT, 'fkb_network_compile_custom: NULL argument')
      return
    end if
    custom%fn = fn
    custom%user = user
    msg = ''
    call net%compile(c_string(optimizer), 'custom', stat=stat, errmsg=msg, custom_loss=custom)
    c_network_compile_custom = finish(stat, msg)
  end function c_network_compile_custom

  integer(c_int) function c_network_set_custom_loss(handle, fn, user) &
      bind(c, name='fkb_network_set_custom_loss')
    type(c_ptr), value :: handle, user
    type(c_funptr), value :: fn
    type(fkb_network), pointer :: net
    type(c_loss) :: custom
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_net(handle, net) .or. .not. c_associated(fn)) then
      c_network_set_custom_loss = fail(FKB_ERR_ARGUMENT, 'fkb_network_set_custom_loss: NULL')
      return
    end if
    custom%fn = fn
    custom%user = user
    msg = ''
    call net%set_custom_loss(custom, stat=stat, errmsg=msg)
    c_network_set_custom_loss = finish(stat, msg)
  end function c_network_set_custom_loss

  integer(c_int64_t) function c_network_iterations(handle) bind(c, name='fkb_network_iterations')
    type(c_ptr), value :: handle
    type(fkb_network), pointer :: net
    c_network_iterations = -1
    if (get_net(handle, net)) c_network_iterations = net%iterations()
  end function c_network_iterations

  integer(c_int) function train_args(handle, x, y, batch, loss, net, xf, yf, where)
    ! Shared checks and views of the training calls.
    type(c_ptr), intent(in) :: handle, x, y, loss
    integer(c_int64_t), intent(in) :: batch
    type(fkb_network), pointer, intent(out) :: net
    real(c_double), pointer, intent(out) :: xf(:, :), yf(:, :)
    character(len=*), intent(in) :: where
    train_args = FKB_OK
    xf => null()
    yf => null()
    if (.not. get_net(handle, net) .or. .not. c_associated(x) .or. .not. c_associated(y) .or. &
        .not. c_associated(loss)) then
      train_args = fail(FKB_ERR_ARGUMENT, where // ': NULL argument')
    else if (batch < 1) then
      train_args = fail(FKB_ERR_ARGUMENT, where // ': batch must be at least 1')
    else
      call c_f_pointer(x, xf, [net%n_inputs(), batch])
      call c_f_pointer(y, yf, [net%n_targets(), batch])
    end if
  end function train_args

  integer(c_int) function c_network_train_on_batch(handle, x, y, batch, weights, loss) &
      bind(c, name='fkb_network_train_on_batch')
    type(c_ptr), value :: handle, x, y, weights, loss
    integer(c_int64_t), value :: batch
    type(fkb_network), pointer :: net
    real(c_double), pointer :: xf(:, :), yf(:, :), wf(:), lf
    character(len=MSG_LEN) :: msg
    integer :: stat
    c_network_train_on_batch = train_args(handle, x, y, batch, loss, net, xf, yf, &
                                          'fkb_network_train_on_batch')
    if (c_network_train_on_batch /= FKB_OK) return
    call c_f_pointer(loss, lf)
    msg = ''
    if (c_associated(weights)) then
      call c_f_pointer(weights, wf, [batch])
      call net%train_on_batch(xf, yf, lf, stat=stat, errmsg=msg, sample_weight=wf)
    else
      call net%train_on_batch(xf, yf, lf, stat=stat, errmsg=msg)
    end if
    c_network_train_on_batch = finish(stat, msg)
  end function c_network_train_on_batch

  integer(c_int) function c_network_evaluate(handle, x, y, batch, weights, loss) &
      bind(c, name='fkb_network_evaluate')
    type(c_ptr), value :: handle, x, y, weights, loss
    integer(c_int64_t), value :: batch
    type(fkb_network), pointer :: net
    real(c_double), pointer :: xf(:, :), yf(:, :), wf(:), lf
    character(len=MSG_LEN) :: msg
    integer :: stat
    c_network_evaluate = train_args(handle, x, y, batch, loss, net, xf, yf, 'fkb_network_evaluate')
    if (c_network_evaluate /= FKB_OK) return
    call c_f_pointer(loss, lf)
    msg = ''
    if (c_associated(weights)) then
      call c_f_pointer(weights, wf, [batch])
      call net%evaluate(xf, yf, lf, stat=stat, errmsg=msg, sample_weight=wf)
    else
      call net%evaluate(xf, yf, lf, stat=stat, errmsg=msg)
    end if
    c_network_evaluate = finish(stat, msg)
  end function c_network_evaluate

  integer(c_int) function c_network_gradients(handle, x, y, batch, weights, loss, grads, count) &
      bind(c, name='fkb_network_gradients')
    type(c_ptr), value :: handle, x, y, weights, loss, grads
    integer(c_int64_t), value :: batch, count
    type(fkb_network), pointer :: net
    real(c_double), pointer :: xf(:, :), yf(:, :), wf(:), lf, gf(:)
    character(len=MSG_LEN) :: msg
    integer :: stat
    c_network_gradients = train_args(handle, x, y, batch, loss, net, xf, yf, &
                                     'fkb_network_gradients')
    if (c_network_gradients /= FKB_OK) return
    if (.not. c_associated(grads) .or. count < 0) then
      c_network_gradients = fail(FKB_ERR_ARGUMENT, 'fkb_network_gradients: NULL grads')
      return
    end if
    call c_f_pointer(loss, lf)
    call c_f_pointer(grads, gf, [count])
    msg = ''
    if (c_associated(weights)) then
      call c_f_pointer(weights, wf, [batch])
      call net%gradients(xf, yf, lf, gf, stat=stat, errmsg=msg, sample_weight=wf)
    else
      call net%gradients(xf, yf, lf, gf, stat=stat, errmsg=msg)
    end if
    c_network_gradients = finish(stat, msg)
  end function c_network_gradients

  integer(c_int) function c_network_train_on_batch_multi(handle, n_in, xs, batch, n_out, ts, &
                                                         weights, loss) &
      bind(c, name='fkb_network_train_on_batch_multi')
    type(c_ptr), value :: handle, xs, ts, weights, loss
    integer(c_int), value :: n_in, n_out
    integer(c_int64_t), value :: batch
    real(c_double) :: none(0)
    c_network_train_on_batch_multi = train_multi(1, handle, n_in, xs, batch, n_out, ts, weights, &
                                                 loss, c_null_ptr, 0_c_int64_t, none, &
                                                 'fkb_network_train_on_batch_multi')
  end function c_network_train_on_batch_multi

  integer(c_int) function c_network_evaluate_multi(handle, n_in, xs, batch, n_out, ts, weights, &
                                                   loss) bind(c, name='fkb_network_evaluate_multi')
    type(c_ptr), value :: handle, xs, ts, weights, loss
    integer(c_int), value :: n_in, n_out
    integer(c_int64_t), value :: batch
    real(c_double) :: none(0)
    c_network_evaluate_multi = train_multi(3, handle, n_in, xs, batch, n_out, ts, weights, loss, &
                                           c_null_ptr, 0_c_int64_t, none, &
                                           'fkb_network_evaluate_multi')
  end function c_network_evaluate_multi

  integer(c_int) function c_network_gradients_multi(handle, n_in, xs, batch, n_out, ts, weights, &
                                                    loss, grads, count) &
      bind(c, name='fkb_network_gradients_multi')
    type(c_ptr), value :: handle, xs, ts, weights, loss, grads
    integer(c_int), value :: n_in, n_out
    integer(c_int64_t), value :: batch, count
    real(c_double) :: none(0)
    c_network_gradients_multi = train_multi(2, handle, n_in, xs, batch, n_out, ts, weights, loss, &
                                            grads, count, none, 'fkb_network_gradients_multi')
  end function c_network_gradients_multi

  integer(c_int) function train_multi(mode, handle, n_in, xs, batch, n_out, ts, weights, loss, &
                                      grads, count, none, fname)
    ! The training calls of several inputs/outputs (mode 1 train, 2 gradients, 3 evaluate): xs
    ! and ts are C arrays of n_in/n_out data pointers, input k holding batch samples of its
    ! size, target k batch samples of fkb_network_n_targets(net, k).
    integer, intent(in) :: mode
    type(c_ptr), intent(in) :: handle, xs, ts, weights, loss, grads
    integer(c_int), intent(in) :: n_in, n_out
    integer(c_int64_t), intent(in) :: batch, count
    real(c_double), intent(in) :: none(:)
    character(len=*), intent(in) :: fname
    type(fkb_network), pointer :: net
    type(c_ptr), pointer :: px(:), pt(:)
    type(fkb_ref64), allocatable :: rx(:), rt(:)
    real(c_double), pointer :: wf(:), lf, gf(:), a(:)
    character(len=MSG_LEN) :: msg
    integer :: stat, k
    integer(int64) :: rows
    train_multi = FKB_OK
    if (.not. get_net(handle, net)) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': network is NULL')
    else if (.not. (c_associated(xs) .and. c_associated(ts) .and. c_associated(loss))) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': xs, ts or loss is NULL')
    else if (batch < 1) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': batch must be at least 1')
    else if (n_in /= net%input_count() .or. n_out /= net%output_count()) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': the network has ' // &
                         itoa(net%input_count()) // ' input(s) and ' // &
                         itoa(net%output_count()) // ' output(s), got ' // itoa(int(n_in)) // &
                         ' and ' // itoa(int(n_out)))
    else if (mode == 2 .and. (.not. c_associated(grads) .or. count < 0)) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': NULL grads')
    else if (.not. net%is_compiled()) then
      train_multi = fail(FKB_ERR_ARGUMENT, fname // ': call fkb_network_compile first')
    end if
    if (train_multi /= FKB_OK) return
    call c_f_pointer(xs, px, [n_in])
    call c_f_pointer(ts, pt, [n_out])
    allocate(rx(n_in), rt(n_out))
    do k = 1, n_in
      if (.not. c_associated(px(k))) then
        train_multi = fail(FKB_ERR_ARGUMENT, fname // ': input ' // itoa(k - 1) // ' is NULL')
        return
      end if
      rows = net%input_size(k)
      call c_f_pointer(px(k), a, [rows * batch])
      rx(k) = fkb_ref64(a, rows, batch)
    end do
    do k = 1, n_out
      if (.not. c_associated(pt(k))) then
        train_multi = fail(FKB_ERR_ARGUMENT, fname // ': target ' // itoa(k - 1) // ' is NULL')
        return
      end if
      rows = net%n_targets(k)
      call c_f_pointer(pt(k), a, [rows * batch])
      rt(k) = fkb_ref64(a, rows, batch)
    end do
    call c_f_pointer(loss, lf)
    msg = ''
    if (c_associated(weights)) then
      call c_f_pointer(weights, wf, [batch])
      select case (mode)
      case (1); call net%train_on_batch(rx, rt, lf, stat=stat, errmsg=msg, sample_weight=wf)
      case (3); call net%evaluate(rx, rt, lf, stat=stat, errmsg=msg, sample_weight=wf)
      case default
        call c_f_pointer(grads, gf, [count])
        call net%gradients(rx, rt, lf, gf, stat=stat, errmsg=msg, sample_weight=wf)
      end select
    else
      select case (mode)
      case (1); call net%train_on_batch(rx, rt, lf, stat=stat, errmsg=msg)
      case (3); call net%evaluate(rx, rt, lf, stat=stat, errmsg=msg)
      case default
        call c_f_pointer(grads, gf, [count])
        call net%gradients(rx, rt, lf, gf, stat=stat, errmsg=msg)
      end select
    end if
    train_multi = finish(stat, msg)
  end function train_multi

  integer(c_int64_t) function c_network_n_targets(handle, output) &
      bind(c, name='fkb_network_n_targets')
    type(c_ptr), value :: handle
    integer(c_int), value :: output
    type(fkb_network), pointer :: net
    c_network_n_targets = -1
    if (get_net(handle, net)) c_network_n_targets = net%n_targets(int(output) + 1)
  end function c_network_n_targets

  ! ---- ensembles ----

  logical function get_ens(handle, ens)
    type(c_ptr), intent(in) :: handle
    type(fkb_ensemble), pointer, intent(out) :: ens
    ens => null()
    get_ens = c_associated(handle)
    if (get_ens) call c_f_pointer(handle, ens)
  end function get_ens

  integer(c_int) function new_ensemble(out, ens, where)
    ! Checks `out`, sets *out = NULL and allocates a fresh ensemble.
    type(c_ptr), intent(in) :: out
    type(fkb_ensemble), pointer, intent(out) :: ens
    character(len=*), intent(in) :: where
    type(c_ptr), pointer :: outp
    integer :: st
    ens => null()
    if (.not. c_associated(out)) then
      new_ensemble = fail(FKB_ERR_ARGUMENT, where // ': out is NULL')
      return
    end if
    call c_f_pointer(out, outp)
    outp = c_null_ptr
    allocate(ens, stat=st)
    new_ensemble = FKB_OK
    if (st /= 0) new_ensemble = fail(FKB_ERR_MEMORY, where // ': out of memory')
  end function new_ensemble

  integer(c_int) function hand_over(out, ens, stat, msg)
    ! Gives the loaded ensemble to *out, or frees it and reports the failure.
    type(c_ptr), intent(in) :: out
    type(fkb_ensemble), pointer, intent(inout) :: ens
    integer, intent(in) :: stat
    character(len=*), intent(in) :: msg
    type(c_ptr), pointer :: outp
    if (stat /= FKB_OK) then
      deallocate(ens)
      hand_over = fail(stat, trim(msg))
      return
    end if
    call c_f_pointer(out, outp)
    outp = c_loc(ens)
    hand_over = FKB_OK
  end function hand_over

  integer(c_int) function c_ensemble_load(paths, n_paths, weights, out) &
      bind(c, name='fkb_ensemble_load')
    type(c_ptr), value :: paths, weights, out
    integer(c_int64_t), value :: n_paths
    type(fkb_ensemble), pointer :: ens
    type(c_ptr), pointer :: each(:)
    real(c_double), pointer :: w(:)
    character(len=4096), allocatable :: list(:)
    character(len=MSG_LEN) :: msg
    integer :: stat, i
    c_ensemble_load = new_ensemble(out, ens, 'fkb_ensemble_load')
    if (c_ensemble_load /= FKB_OK) return
    if (.not. c_associated(paths) .or. n_paths < 1) then
      deallocate(ens)
      c_ensemble_load = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_load: an ensemble needs at least one member')
      return
    end if
    call c_f_pointer(paths, each, [n_paths])
    allocate(list(n_paths))
    do i = 1, int(n_paths)
      if (.not. c_associated(each(i))) then
        deallocate(ens)
        c_ensemble_load = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_load: a member path is NULL')
        return
      end if
      list(i) = c_string(each(i))
    end do
    msg = ''
    if (c_associated(weights)) then
      call c_f_pointer(weights, w, [n_paths])
      call ens%load(list, stat=stat, errmsg=msg, weights=w)
    else
      call ens%load(list, stat=stat, errmsg=msg)
    end if
    c_ensemble_load = hand_over(out, ens, stat, msg)
  end function c_ensemble_load

  integer(c_int) function c_ensemble_load_directory(dir, out) &
      bind(c, name='fkb_ensemble_load_directory')
    type(c_ptr), value :: dir, out
    type(fkb_ensemble), pointer :: ens
    character(len=MSG_LEN) :: msg
    integer :: stat
    c_ensemble_load_directory = new_ensemble(out, ens, 'fkb_ensemble_load_directory')
    if (c_ensemble_load_directory /= FKB_OK) return
    if (.not. c_associated(dir)) then
      deallocate(ens)
      c_ensemble_load_directory = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_load_directory: NULL')
      return
    end if
    msg = ''
    call ens%load_directory(c_string(dir), stat=stat, errmsg=msg)
    c_ensemble_load_directory = hand_over(out, ens, stat, msg)
  end function c_ensemble_load_directory

  integer(c_int) function c_ensemble_load_manifest(path, out) &
      bind(c, name='fkb_ensemble_load_manifest')
    type(c_ptr), value :: path, out
    type(fkb_ensemble), pointer :: ens
    character(len=MSG_LEN) :: msg
    integer :: stat
    c_ensemble_load_manifest = new_ensemble(out, ens, 'fkb_ensemble_load_manifest')
    if (c_ensemble_load_manifest /= FKB_OK) return
    if (.not. c_associated(path)) then
      deallocate(ens)
      c_ensemble_load_manifest = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_load_manifest: NULL')
      return
    end if
    msg = ''
    call ens%load_manifest(c_string(path), stat=stat, errmsg=msg)
    c_ensemble_load_manifest = hand_over(out, ens, stat, msg)
  end function c_ensemble_load_manifest

  subroutine c_ensemble_free(handle_ref) bind(c, name='fkb_ensemble_free')
    type(c_ptr), value :: handle_ref
    type(c_ptr), pointer :: handle
    type(fkb_ensemble), pointer :: ens
    if (.not. c_associated(handle_ref)) return
    call c_f_pointer(handle_ref, handle)
    if (get_ens(handle, ens)) deallocate(ens)
    handle = c_null_ptr
  end subroutine c_ensemble_free

  integer(c_int64_t) function c_ensemble_n_members(handle) bind(c, name='fkb_ensemble_n_members')
    type(c_ptr), value :: handle
    type(fkb_ensemble), pointer :: ens
    c_ensemble_n_members = -1
    if (get_ens(handle, ens)) c_ensemble_n_members = ens%n_members()
  end function c_ensemble_n_members

  integer(c_int64_t) function c_ensemble_n_inputs(handle) bind(c, name='fkb_ensemble_n_inputs')
    type(c_ptr), value :: handle
    type(fkb_ensemble), pointer :: ens
    c_ensemble_n_inputs = -1
    if (get_ens(handle, ens)) c_ensemble_n_inputs = ens%n_inputs()
  end function c_ensemble_n_inputs

  integer(c_int64_t) function c_ensemble_n_outputs(handle) bind(c, name='fkb_ensemble_n_outputs')
    type(c_ptr), value :: handle
    type(fkb_ensemble), pointer :: ens
    c_ensemble_n_outputs = -1
    if (get_ens(handle, ens)) c_ensemble_n_outputs = ens%n_outputs()
  end function c_ensemble_n_outputs

  integer(c_int) function c_ensemble_set_noise(handle, std, n_std, copies, seed) &
      bind(c, name='fkb_ensemble_set_noise')
    type(c_ptr), value :: handle, std
    integer(c_int64_t), value :: n_std, copies, seed
    type(fkb_ensemble), pointer :: ens
    real(c_double), pointer :: s(:)
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_ens(handle, ens) .or. .not. c_associated(std) .or. n_std < 1) then
      c_ensemble_set_noise = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_set_noise: NULL argument &
                                  &or no noise values')
      return
    end if
    if (copies < 1 .or. copies > huge(1)) then
      c_ensemble_set_noise = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_set_noise: copies must be &
                                  &at least 1')
      return
    end if
    call c_f_pointer(std, s, [n_std])
    msg = ''
    call ens%set_noise(s, int(copies), seed, stat=stat, errmsg=msg)
    c_ensemble_set_noise = finish(stat, msg)
  end function c_ensemble_set_noise

  integer(c_int) function c_ensemble_set_mc_dropout(handle, on, copies, seed) &
      bind(c, name='fkb_ensemble_set_mc_dropout')
    type(c_ptr), value :: handle
    integer(c_int), value :: on
    integer(c_int64_t), value :: copies, seed
    type(fkb_ensemble), pointer :: ens
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_ens(handle, ens)) then
      c_ensemble_set_mc_dropout = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_set_mc_dropout: NULL')
      return
    end if
    if (copies < 1 .or. copies > huge(1)) then
      c_ensemble_set_mc_dropout = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_set_mc_dropout: copies &
                                       &must be at least 1')
      return
    end if
    msg = ''
    call ens%set_mc_dropout(on /= 0, int(copies), seed, stat=stat, errmsg=msg)
    c_ensemble_set_mc_dropout = finish(stat, msg)
  end function c_ensemble_set_mc_dropout

  integer(c_int) function c_ensemble_predict(handle, x, batch, mean, std, minimum, maximum) &
      bind(c, name='fkb_ensemble_predict')
    type(c_ptr), value :: handle, x, mean, std, minimum, maximum
    integer(c_int64_t), value :: batch
    type(fkb_ensemble), pointer :: ens
    real(c_double), pointer :: xf(:, :), mf(:, :), sf(:, :), lo(:, :), hi(:, :)
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_ens(handle, ens) .or. .not. c_associated(x) .or. .not. c_associated(mean)) then
      c_ensemble_predict = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_predict: NULL argument')
      return
    end if
    if (batch < 1) then
      c_ensemble_predict = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_predict: batch must be at &
                                &least 1')
      return
    end if
    call c_f_pointer(x, xf, [ens%n_inputs(), batch])
    call c_f_pointer(mean, mf, [ens%n_outputs(), batch])
    sf => null()
    lo => null()
    hi => null()
    ! A disassociated pointer passed to an optional argument counts as absent (Fortran 2008).
    if (c_associated(std)) call c_f_pointer(std, sf, [ens%n_outputs(), batch])
    if (c_associated(minimum)) call c_f_pointer(minimum, lo, [ens%n_outputs(), batch])
    if (c_associated(maximum)) call c_f_pointer(maximum, hi, [ens%n_outputs(), batch])
    msg = ''
    call ens%predict(xf, mf, stat=stat, errmsg=msg, std=sf, minimum=lo, maximum=hi)
    c_ensemble_predict = finish(stat, msg)
  end function c_ensemble_predict

  integer(c_int) function c_ensemble_predict_members(handle, x, batch, members) &
      bind(c, name='fkb_ensemble_predict_members')
    type(c_ptr), value :: handle, x, members
    integer(c_int64_t), value :: batch
    type(fkb_ensemble), pointer :: ens
    real(c_double), pointer :: xf(:, :), yf(:, :, :)
    real(c_double), allocatable :: mean(:, :)
    character(len=MSG_LEN) :: msg
    integer :: stat
    if (.not. get_ens(handle, ens) .or. .not. c_associated(x) .or. &
        .not. c_associated(members)) then
      c_ensemble_predict_members = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_predict_members: &
                                        &NULL argument')
      return
    end if
    if (batch < 1) then
      c_ensemble_predict_members = fail(FKB_ERR_ARGUMENT, 'fkb_ensemble_predict_members: &
                                        &batch must be at least 1')
      return
    end if
    call c_f_pointer(x, xf, [ens%n_inputs(), batch])
    call c_f_pointer(members, yf, [ens%n_outputs(), batch, int(ens%n_members(), c_int64_t)])
    allocate(mean(ens%n_outputs(), batch))
    msg = ''
    call ens%predict(xf, mean, stat=stat, errmsg=msg, members=yf)
    c_ensemble_predict_members = finish(stat, msg)
  end function c_ensemble_predict_members

end module fkb_c_api
